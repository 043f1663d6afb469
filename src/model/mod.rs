//! Models (in progress)
