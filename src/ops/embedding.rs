//! (not written yet)

use crate::gpu::Kernel;

/// Every specialisation this module dispatches.
pub fn kernels() -> Vec<Kernel> {
    Vec::new()
}
