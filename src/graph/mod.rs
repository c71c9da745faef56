//! A forward step as a graph: ops record dispatches on values, `compile` plans the
//! intermediate buffers by lifetime and builds every bind group once, and `Plan::run`
//! encodes the whole step into one compute pass and one submit.
//!
//! Decode loops can keep the GPU busy while the host reads a result: [`Graph::copy`] feeds a
//! step's output (the sampled ids) into its own input for the next run, and each readback has
//! two staging buffers used in turn, so run `k + 1` can be submitted before the host reads run
//! `k` with [`Plan::read_run`].
//!
//! Binding convention every shader follows: if a dispatch has parameters they are a uniform
//! at `@binding(0)`, and the buffers follow at 1, 2, ... in the order given; without
//! parameters the buffers start at 0. All at `@group(0)`. Each op's kernel declares them, by
//! name, in its [`crate::gpu::Contract`], which `tests/host/contract.rs` checks against the WGSL.

mod plan;

pub use plan::{NodeId, Plan, Run, Scratch};

use crate::gpu::{Context, DType, Kernel, Tensor};
use crate::{Error, Result};

/// A value in a graph: an external tensor, or an intermediate the plan places in a buffer.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct Val(pub(crate) usize);

pub(crate) struct Slot {
    pub shape: Vec<usize>,
    pub dtype: DType,
    /// The tensor for external values; `None` for intermediates until planned.
    pub external: Option<Tensor>,
    /// For a view: the value whose buffer it shares.
    pub root: usize,
    /// Kept intermediates survive the step and are readable through [`Plan::tensor`].
    pub keep: bool,
}

pub(crate) struct Node {
    pub kernel: Kernel,
    pub params: Vec<u8>,
    pub binds: Vec<Val>,
    pub groups: [u32; 3],
}

/// Ops of one step, recorded in order.
pub struct Graph {
    pub(crate) ctx: Context,
    pub(crate) slots: Vec<Slot>,
    pub(crate) nodes: Vec<Node>,
    pub(crate) readbacks: Vec<Val>,
    /// `(src, dst)` buffer copies encoded after the compute pass.
    pub(crate) copies: Vec<(Val, Val)>,
}

impl Graph {
    pub fn new(ctx: &Context) -> Graph {
        Graph { ctx: ctx.clone(), slots: Vec::new(), nodes: Vec::new(), readbacks: Vec::new(), copies: Vec::new() }
    }

    pub fn ctx(&self) -> &Context {
        &self.ctx
    }

    /// An existing tensor (weights, inputs, a cache, an output the caller owns).
    pub fn input(&mut self, t: &Tensor) -> Val {
        let root = self.slots.len();
        self.slots.push(Slot {
            shape: t.shape().to_vec(),
            dtype: t.dtype(),
            external: Some(t.clone()),
            root,
            keep: true,
        });
        Val(root)
    }

    /// A new intermediate; its buffer is chosen by `compile`.
    pub fn tensor(&mut self, shape: &[usize], dtype: DType) -> Val {
        let root = self.slots.len();
        self.slots.push(Slot { shape: shape.to_vec(), dtype, external: None, root, keep: false });
        Val(root)
    }

    /// The same buffer seen with another shape of equal size.
    pub fn view(&mut self, v: Val, shape: &[usize]) -> Result<Val> {
        let s = &self.slots[v.0];
        if s.dtype.bytes(shape) != s.dtype.bytes(&s.shape)
            || shape.iter().product::<usize>() != s.shape.iter().product::<usize>()
        {
            return Err(Error::Invalid(format!("cannot view {:?} as {shape:?}", s.shape)));
        }
        let (dtype, external, root) = (s.dtype, s.external.clone(), s.root);
        let external = external.map(|t| t.reshape(shape)).transpose()?;
        self.slots.push(Slot { shape: shape.to_vec(), dtype, external, root, keep: false });
        Ok(Val(self.slots.len() - 1))
    }

    /// Keeps an intermediate after the step, readable with [`Plan::tensor`].
    pub fn keep(&mut self, v: Val) {
        let root = self.slots[v.0].root;
        self.slots[root].keep = true;
    }

    /// Gives the plan a staging buffer for `v`, so [`Plan::read_words`] needs no allocation.
    pub fn readback(&mut self, v: Val) {
        self.keep(v);
        self.readbacks.push(v);
    }

    /// Copies `src` into the external tensor `dst` after every dispatch of the step (so the
    /// next run reads it), e.g. a decode step's chosen ids into its id input. Same byte size.
    pub fn copy(&mut self, src: Val, dst: Val) -> Result<()> {
        let (s, d) = (&self.slots[src.0], &self.slots[dst.0]);
        if d.external.is_none() {
            return Err(Error::Invalid("Graph::copy writes only into an input tensor".into()));
        }
        if s.dtype.bytes(&s.shape) != d.dtype.bytes(&d.shape) {
            return Err(Error::Invalid(format!("cannot copy {:?} into {:?}", s.shape, d.shape)));
        }
        self.keep(src);
        self.copies.push((src, dst));
        Ok(())
    }

    pub fn shape(&self, v: Val) -> &[usize] {
        &self.slots[v.0].shape
    }
    pub fn dtype(&self, v: Val) -> DType {
        self.slots[v.0].dtype
    }

    /// Records one dispatch. `params` is the uniform at binding 0 (empty for none); `binds`
    /// the storage operands by the names the kernel's [`crate::gpu::Contract`] gives them, in
    /// its order (checked in debug builds: an operand cannot land on another's binding).
    pub fn dispatch(&mut self, kernel: Kernel, params: &[u8], binds: &[(&str, Val)], groups: [u32; 3]) -> NodeId {
        debug_assert!(
            kernel.contract.is_none_or(|c| c.fits(params.len(), binds.iter().map(|b| b.0))),
            "{}::{}: {} bytes of params and the operands {:?}, but the kernel takes {}",
            kernel.shader,
            kernel.entry,
            params.len(),
            binds.iter().map(|b| b.0).collect::<Vec<_>>(),
            kernel.contract.unwrap(),
        );
        let binds = binds.iter().map(|b| b.1).collect();
        self.nodes.push(Node { kernel, params: params.to_vec(), binds, groups });
        NodeId(self.nodes.len() - 1)
    }

    pub fn compile(self) -> Result<Plan> {
        Plan::new(self, None)
    }

    /// Compiles with its intermediates taken from `scratch`, shared with every other plan
    /// compiled with it (see [`Scratch`]).
    pub fn compile_in(self, scratch: &Scratch) -> Result<Plan> {
        Plan::new(self, Some(scratch))
    }
}

/// Workgroup counts for `n` groups laid out in x then y, each at most 65,535 (the portable
/// limit). Shaders recover the linear index as `wg.x + wg.y * num_workgroups.x`.
pub fn groups_1d(n: u32) -> [u32; 3] {
    const MAX: u32 = 65_535;
    if n <= MAX {
        [n.max(1), 1, 1]
    } else {
        let y = n.div_ceil(MAX);
        [n.div_ceil(y), y, 1]
    }
}
