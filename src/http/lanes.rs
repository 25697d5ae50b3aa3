//! Connection threads ("lanes"), for `server.threading = "per_core"`:
//! each runs a single-threaded runtime and serves the connections handed
//! to it, as nginx's workers do.

/// Threads each running a single-threaded runtime, serving the
/// connections handed to them in turn: a connection's reads, writes,
/// timers and requests all stay on its thread, as with nginx's workers.
/// The threads end when this is dropped (their runtimes with them).
pub struct Lanes {
    handles: Vec<tokio::runtime::Handle>,
    next: std::sync::atomic::AtomicUsize,
    /// Dropped to stop the threads.
    _stop: Vec<tokio::sync::oneshot::Sender<()>>,
}

impl Lanes {
    /// Starts `n` threads (at least one).
    pub fn start(n: usize) -> std::io::Result<Self> {
        let mut handles = Vec::new();
        let mut stops = Vec::new();
        for i in 0..n.max(1) {
            let runtime = tokio::runtime::Builder::new_current_thread()
                .enable_all()
                .thread_name(format!("fg-conn-{i}-blk"))
                .build()?;
            let (stop, stopped) = tokio::sync::oneshot::channel::<()>();
            handles.push(runtime.handle().clone());
            stops.push(stop);
            std::thread::Builder::new()
                // (Linux keeps 15 bytes of a thread's name.)
                .name(format!("fg-conn-{i}"))
                .spawn(move || {
                    // Until the sender is dropped; the runtime, and the
                    // tasks left on it, end with the thread.
                    let _ = runtime.block_on(stopped);
                })?;
        }
        Ok(Lanes {
            handles,
            next: std::sync::atomic::AtomicUsize::new(0),
            _stop: stops,
        })
    }

    pub(super) fn pick(&self) -> &tokio::runtime::Handle {
        let i = self.next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        &self.handles[i % self.handles.len()]
    }
}
