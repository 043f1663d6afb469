//! `--device auto|cpu|cuda[:N]`: which backend runs a command.

use crate::backend::Cpu;
#[allow(unused_imports)]
use crate::error::{Error, Result};

/// The device a user asked for.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum DeviceChoice {
    /// The first GPU if CUDA works here, else the CPU (with one line saying why).
    Auto,
    Cpu,
    Cuda(usize),
}

impl std::str::FromStr for DeviceChoice {
    type Err = String;
    fn from_str(s: &str) -> std::result::Result<Self, String> {
        match s {
            "auto" => Ok(DeviceChoice::Auto),
            "cpu" => Ok(DeviceChoice::Cpu),
            "cuda" | "gpu" => Ok(DeviceChoice::Cuda(0)),
            _ => match s.strip_prefix("cuda:") {
                Some(n) => n.parse().map(DeviceChoice::Cuda).map_err(|_| format!("bad device `{s}`: expected cuda:N")),
                None => Err(format!("unknown device `{s}` (expected auto, cpu, cuda or cuda:N)")),
            },
        }
    }
}

/// A backend chosen at run time.
pub enum Device {
    Cpu(Cpu<f32>),
    #[cfg(feature = "cuda")]
    Cuda(crate::backend::cuda::Cuda),
}

impl Device {
    /// Opens the requested device. `auto` falls back to the CPU with one line on stderr saying
    /// why; an explicit `cuda` fails with the reason.
    pub fn open(choice: DeviceChoice, threads: usize) -> Result<Device> {
        match choice {
            DeviceChoice::Cpu => Ok(Device::Cpu(Cpu::new(threads))),
            DeviceChoice::Cuda(n) => open_cuda(n),
            DeviceChoice::Auto => match open_cuda(0) {
                Ok(d) => Ok(d),
                Err(e) => {
                    eprintln!("note: using the CPU ({threads} thread{}): {e}", if threads == 1 { "" } else { "s" });
                    Ok(Device::Cpu(Cpu::new(threads)))
                }
            },
        }
    }
}

#[cfg(feature = "cuda")]
fn open_cuda(n: usize) -> Result<Device> {
    crate::backend::cuda::Cuda::new(n).map(Device::Cuda)
}

#[cfg(not(feature = "cuda"))]
fn open_cuda(_n: usize) -> Result<Device> {
    Err(Error::Cuda("this build has no CUDA support (built without the `cuda` feature)".into()))
}

/// The default thread count: all cores.
pub fn default_threads() -> usize {
    std::thread::available_parallelism().map(|n| n.get()).unwrap_or(1)
}

/// Runs `$body` with `$be` bound to the chosen backend (a `&impl Backend`).
#[macro_export]
macro_rules! with_device {
    ($dev:expr, |$be:ident| $body:expr) => {{
        match $dev {
            $crate::cli::device::Device::Cpu(ref c) => {
                let $be = c;
                $body
            }
            #[cfg(feature = "cuda")]
            $crate::cli::device::Device::Cuda(ref c) => {
                let $be = c;
                $body
            }
        }
    }};
}
