//! Reuse of intermediate buffers: a graph's transients come from here and go back when the
//! plan that held them is dropped, so re-planning the same step allocates nothing new.

use std::collections::HashMap;
use std::sync::Mutex;

#[derive(Default)]
pub(crate) struct BufferPool {
    free: Mutex<HashMap<(u64, wgpu::BufferUsages), Vec<wgpu::Buffer>>>,
}

impl BufferPool {
    pub fn take(&self, size: u64, usage: wgpu::BufferUsages) -> Option<wgpu::Buffer> {
        self.free.lock().unwrap().get_mut(&(size, usage)).and_then(Vec::pop)
    }
    pub fn give(&self, buffer: wgpu::Buffer) {
        let key = (buffer.size(), buffer.usage());
        self.free.lock().unwrap().entry(key).or_default().push(buffer);
    }
    /// Every idle buffer, leaving the pool empty.
    pub fn drain(&self) -> Vec<wgpu::Buffer> {
        self.free.lock().unwrap().drain().flat_map(|(_, v)| v).collect()
    }
}
