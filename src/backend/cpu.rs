//! CPU reference backend (in progress)
pub struct Cpu;
