//! What decides which kernel runs: the device's facts and the user's switches, settled once
//! when a [`super::Context`] opens. Each op family reads only this to choose its kernel (one
//! `choose` function per family in `src/ops/`), so two contexts with equal policies run the
//! same kernels, and a test can name the policy it needs instead of an adapter.

/// The kernel policy of a context ([`super::Context::policy`]).
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct KernelPolicy {
    /// The CPU adapters' kernel set: no workgroup tiles or barriers (the direct GEMM, the rows
    /// attention, one thread per LayerNorm row). By default exactly on a CPU adapter.
    pub cpu_kernels: bool,
    /// A decode step's GEMVs apply the LayerNorm in front of them themselves (one dispatch
    /// fewer per norm). By default on every adapter but a CPU one.
    pub norm_in_gemv: bool,
    /// The smallest and largest subgroup the device may pick, where it has subgroup operations
    /// (requested and offered); `None` without.
    pub subgroups: Option<(u32, u32)>,
}

impl KernelPolicy {
    pub fn has_subgroups(&self) -> bool {
        self.subgroups.is_some()
    }

    /// Whether every subgroup has exactly `lanes` lanes, so a workgroup of `lanes` threads is
    /// one whole subgroup whose lanes are its threads: what the kernels that shuffle from
    /// constant lanes need. (A wider subgroup would hold such a workgroup too, but where in it
    /// the threads sit is the driver's choice.)
    pub fn subgroups_are(&self, lanes: u32) -> bool {
        self.subgroups == Some((lanes, lanes))
    }

    /// The fewest lanes a subgroup may have (1 without subgroups).
    pub fn min_subgroup(&self) -> u32 {
        self.subgroups.map_or(1, |(min, _)| min.max(1))
    }

    /// Policies that between them reach every kernel choice: both kernel sets, the norm inside
    /// the GEMV or not, and no subgroups, subgroups of 4, of exactly 8 (what the shared-load
    /// twins need) and of 32 or 4 to 64 (real GPUs). For enumerating what can be dispatched.
    pub fn every() -> Vec<KernelPolicy> {
        let subgroups = [None, Some((4, 4)), Some((8, 8)), Some((32, 32)), Some((4, 64))];
        let mut out = Vec::new();
        for cpu_kernels in [false, true] {
            for norm_in_gemv in [false, true] {
                for subgroups in subgroups {
                    out.push(KernelPolicy { cpu_kernels, norm_in_gemv, subgroups });
                }
            }
        }
        out
    }
}
