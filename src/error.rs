//! The project's error type: every failure names the file, field or kernel it concerns.

use std::path::PathBuf;

#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io { path: PathBuf, source: std::io::Error },
    /// A file was read but its content is not what its format requires.
    #[error("{path}: {msg}")]
    Format { path: PathBuf, msg: String },
    /// A configuration value is invalid; `field` is its dotted path (e.g. `train.lr`).
    #[error("{origin}: field `{field}`: {msg}")]
    Config { origin: String, field: String, msg: String },
    /// Shapes or sizes that do not fit together.
    #[error("shape mismatch: {0}")]
    Shape(String),
    /// Training produced a NaN or infinite value.
    #[error("divergence: {0}")]
    Divergence(String),
    /// CUDA is missing, or a CUDA call or kernel failed.
    #[error("CUDA: {0}")]
    Cuda(String),
    /// Anything else, with a message that says what and where.
    #[error("{0}")]
    Msg(String),
}

pub type Result<T> = std::result::Result<T, Error>;

impl Error {
    pub fn io(path: impl Into<PathBuf>, source: std::io::Error) -> Self {
        Error::Io { path: path.into(), source }
    }
    pub fn format(path: impl Into<PathBuf>, msg: impl Into<String>) -> Self {
        Error::Format { path: path.into(), msg: msg.into() }
    }
    pub fn config(origin: impl Into<String>, field: impl Into<String>, msg: impl Into<String>) -> Self {
        Error::Config { origin: origin.into(), field: field.into(), msg: msg.into() }
    }
    pub fn msg(msg: impl Into<String>) -> Self {
        Error::Msg(msg.into())
    }
}

/// Writes `bytes` to `path` atomically: a temporary file in the same folder, flushed, then renamed
/// over the target, so a reader never sees a half-written file and a crash leaves the old one.
pub fn write_atomic(path: &std::path::Path, bytes: &[u8]) -> Result<()> {
    use std::io::Write;
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(std::path::Path::new("."));
    std::fs::create_dir_all(dir).map_err(|e| Error::io(dir, e))?;
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp{}", std::process::id()));
    let result = (|| {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(bytes)?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)
    })();
    if let Err(e) = result {
        let _ = std::fs::remove_file(&tmp);
        return Err(Error::io(path, e));
    }
    Ok(())
}
