//! The C ABI of `shim/c10d.cpp`, and the few unsafe lines that cross it.
//! Every shim function returns NULL on success or a malloc'ed message; the
//! wrappers here turn that into a `Result<_, String>`.
#![allow(unsafe_code)]

use std::ffi::{c_char, c_int, c_void, CStr, CString};
use tch::Tensor;

#[repr(C)]
pub struct SslStore {
    _private: [u8; 0],
}
#[repr(C)]
pub struct SslGroup {
    _private: [u8; 0],
}
#[repr(C)]
pub struct SslReducer {
    _private: [u8; 0],
}

type Msg = *mut c_char;

extern "C" {
    fn ssl_free(p: *mut c_void);
    fn ssl_store_new(
        host: *const c_char,
        port: u16,
        is_server: c_int,
        world: c_int,
        wait_workers: c_int,
        prefix: *const c_char,
        timeout_ms: i64,
        out: *mut *mut SslStore,
    ) -> Msg;
    fn ssl_store_free(s: *mut SslStore);
    fn ssl_store_set(s: *mut SslStore, key: *const c_char, data: *const u8, len: usize) -> Msg;
    fn ssl_store_get(s: *mut SslStore, key: *const c_char, data: *mut *mut u8, len: *mut usize) -> Msg;
    fn ssl_store_add(s: *mut SslStore, key: *const c_char, delta: i64, out: *mut i64) -> Msg;
    fn ssl_store_set_timeout(s: *mut SslStore, timeout_ms: i64) -> Msg;
    fn ssl_group_new(
        s: *mut SslStore,
        rank: c_int,
        size: c_int,
        timeout_ms: i64,
        iface: *const c_char,
        host: *const c_char,
        cuda_device: c_int,
        use_nccl: c_int,
        out: *mut *mut SslGroup,
    ) -> Msg;
    fn ssl_group_free(g: *mut SslGroup);
    fn ssl_has_nccl() -> c_int;
    fn ssl_all_reduce(g: *mut SslGroup, t: *mut c_void, op: c_int) -> Msg;
    fn ssl_broadcast(g: *mut SslGroup, t: *mut c_void, root: c_int) -> Msg;
    fn ssl_barrier(g: *mut SslGroup) -> Msg;
    fn ssl_all_gather(g: *mut SslGroup, out: *mut c_void, input: *mut c_void) -> Msg;
    fn ssl_reduce_scatter(g: *mut SslGroup, out: *mut c_void, input: *mut c_void, op: c_int) -> Msg;
    fn ssl_broadcast_coalesced(
        g: *mut SslGroup,
        ts: *const *mut c_void,
        n: usize,
        root: c_int,
        buffer_bytes: usize,
    ) -> Msg;
    fn ssl_all_gather_grad(g: *mut SslGroup, input: *mut c_void, out: *mut *mut c_void) -> Msg;
    fn ssl_all_reduce_grad(g: *mut SslGroup, input: *mut c_void, out: *mut *mut c_void) -> Msg;
    fn ssl_reducer_new(
        g: *mut SslGroup,
        params: *const *mut c_void,
        names: *const *const c_char,
        n: usize,
        bucket_bytes: i64,
        find_unused: c_int,
        out: *mut *mut SslReducer,
    ) -> Msg;
    fn ssl_reducer_prepare_forward(r: *mut SslReducer) -> Msg;
    fn ssl_reducer_prepare_backward(r: *mut SslReducer, outputs: *const *mut c_void, n: usize) -> Msg;
    fn ssl_reducer_free(r: *mut SslReducer) -> Msg;
}

/// The shim's message, freed.
fn check(msg: Msg) -> Result<(), String> {
    if msg.is_null() {
        return Ok(());
    }
    // SAFETY: a non-null return is a NUL-terminated string from malloc.
    let text = unsafe { CStr::from_ptr(msg) }.to_string_lossy().trim().to_string();
    unsafe { ssl_free(msg.cast()) };
    Err(text)
}

fn cstr(s: &str) -> Result<CString, String> {
    CString::new(s).map_err(|_| format!("{s:?} contains a NUL byte"))
}

fn ptr(t: &Tensor) -> *mut c_void {
    t.as_ptr() as *mut c_void
}

/// A store handle owned by Rust.
pub struct Store(*mut SslStore);

// SAFETY: c10d's TCPStore serialises its operations with an internal lock.
unsafe impl Send for Store {}
unsafe impl Sync for Store {}

impl Store {
    /// See `ssl_store_new`.
    pub fn new(
        host: &str,
        port: u16,
        is_server: bool,
        world: usize,
        wait_workers: bool,
        prefix: &str,
        timeout_ms: i64,
    ) -> Result<Store, String> {
        let (host, prefix) = (cstr(host)?, cstr(prefix)?);
        let mut out = std::ptr::null_mut();
        // SAFETY: valid C strings; `out` is written on success only.
        check(unsafe {
            ssl_store_new(
                host.as_ptr(),
                port,
                is_server as c_int,
                world as c_int,
                wait_workers as c_int,
                prefix.as_ptr(),
                timeout_ms,
                &mut out,
            )
        })?;
        Ok(Store(out))
    }

    pub fn set(&self, key: &str, value: &[u8]) -> Result<(), String> {
        let key = cstr(key)?;
        // SAFETY: the store lives as long as self; the slice is valid.
        check(unsafe { ssl_store_set(self.0, key.as_ptr(), value.as_ptr(), value.len()) })
    }

    pub fn get(&self, key: &str) -> Result<Vec<u8>, String> {
        let key = cstr(key)?;
        let (mut data, mut len) = (std::ptr::null_mut(), 0usize);
        // SAFETY: on success the shim hands over a malloc'ed buffer of `len` bytes.
        check(unsafe { ssl_store_get(self.0, key.as_ptr(), &mut data, &mut len) })?;
        let out = unsafe { std::slice::from_raw_parts(data, len) }.to_vec();
        unsafe { ssl_free(data.cast()) };
        Ok(out)
    }

    pub fn add(&self, key: &str, delta: i64) -> Result<i64, String> {
        let key = cstr(key)?;
        let mut out = 0;
        // SAFETY: plain values.
        check(unsafe { ssl_store_add(self.0, key.as_ptr(), delta, &mut out) })?;
        Ok(out)
    }

    pub fn set_timeout(&self, timeout_ms: i64) -> Result<(), String> {
        // SAFETY: plain values.
        check(unsafe { ssl_store_set_timeout(self.0, timeout_ms) })
    }
}

impl Drop for Store {
    fn drop(&mut self) {
        // SAFETY: created by ssl_store_new, freed once.
        unsafe { ssl_store_free(self.0) }
    }
}

/// Whether the shim was built with NCCL.
pub fn has_nccl() -> bool {
    // SAFETY: no arguments.
    unsafe { ssl_has_nccl() != 0 }
}

/// A process-group handle owned by Rust.
pub struct Pg(*mut SslGroup);

// SAFETY: c10d process groups queue work from any thread; callers keep the
// order of collectives the same on every rank.
unsafe impl Send for Pg {}
unsafe impl Sync for Pg {}

impl Pg {
    /// See `ssl_group_new` (one argument per C parameter).
    #[allow(clippy::too_many_arguments)]
    pub fn new(
        store: &Store,
        rank: usize,
        size: usize,
        timeout_ms: i64,
        iface: &str,
        host: &str,
        cuda_device: Option<usize>,
        use_nccl: bool,
    ) -> Result<Pg, String> {
        let (iface, host) = (cstr(iface)?, cstr(host)?);
        let cuda = cuda_device.map_or(-1, |d| d as c_int);
        let mut out = std::ptr::null_mut();
        // SAFETY: the store outlives the call; the shim copies its handle.
        check(unsafe {
            ssl_group_new(
                store.0,
                rank as c_int,
                size as c_int,
                timeout_ms,
                iface.as_ptr(),
                host.as_ptr(),
                cuda,
                use_nccl as c_int,
                &mut out,
            )
        })?;
        Ok(Pg(out))
    }

    pub fn all_reduce(&self, t: &Tensor, op: i32) -> Result<(), String> {
        // SAFETY: the tensor is alive for the call; it is updated in place.
        check(unsafe { ssl_all_reduce(self.0, ptr(t), op) })
    }

    pub fn broadcast(&self, t: &Tensor, root: usize) -> Result<(), String> {
        // SAFETY: as above.
        check(unsafe { ssl_broadcast(self.0, ptr(t), root as c_int) })
    }

    pub fn barrier(&self) -> Result<(), String> {
        // SAFETY: no tensors.
        check(unsafe { ssl_barrier(self.0) })
    }

    pub fn all_gather(&self, out: &Tensor, input: &Tensor) -> Result<(), String> {
        // SAFETY: both tensors are alive for the call; `out` is written.
        check(unsafe { ssl_all_gather(self.0, ptr(out), ptr(input)) })
    }

    pub fn reduce_scatter(&self, out: &Tensor, input: &Tensor, op: i32) -> Result<(), String> {
        // SAFETY: as above.
        check(unsafe { ssl_reduce_scatter(self.0, ptr(out), ptr(input), op) })
    }

    pub fn broadcast_coalesced(&self, ts: &[Tensor], root: usize, buffer_bytes: usize) -> Result<(), String> {
        let ptrs: Vec<*mut c_void> = ts.iter().map(ptr).collect();
        // SAFETY: the tensors outlive the call; they are updated in place.
        check(unsafe {
            ssl_broadcast_coalesced(self.0, ptrs.as_ptr(), ptrs.len(), root as c_int, buffer_bytes)
        })
    }

    pub fn all_gather_grad(&self, input: &Tensor) -> Result<Tensor, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: on success `out` is a new `at::Tensor*` that the returned
        // Tensor owns (tch frees it with `delete`).
        check(unsafe { ssl_all_gather_grad(self.0, ptr(input), &mut out) })?;
        Ok(unsafe { Tensor::from_ptr(out.cast()) })
    }

    pub fn all_reduce_grad(&self, input: &Tensor) -> Result<Tensor, String> {
        let mut out = std::ptr::null_mut();
        // SAFETY: as above.
        check(unsafe { ssl_all_reduce_grad(self.0, ptr(input), &mut out) })?;
        Ok(unsafe { Tensor::from_ptr(out.cast()) })
    }

    /// A DDP Reducer over `params` (see `ssl_reducer_new`).
    pub fn reducer(
        &self,
        params: &[(String, Tensor)],
        bucket_bytes: i64,
        find_unused: bool,
    ) -> Result<Reducer, String> {
        let names: Vec<CString> = params.iter().map(|(n, _)| cstr(n)).collect::<Result<_, _>>()?;
        let name_ptrs: Vec<*const c_char> = names.iter().map(|n| n.as_ptr()).collect();
        let ptrs: Vec<*mut c_void> = params.iter().map(|(_, t)| ptr(t)).collect();
        let mut out = std::ptr::null_mut();
        // SAFETY: the shim copies the tensor handles and names.
        check(unsafe {
            ssl_reducer_new(
                self.0,
                ptrs.as_ptr(),
                name_ptrs.as_ptr(),
                ptrs.len(),
                bucket_bytes,
                find_unused as c_int,
                &mut out,
            )
        })?;
        Ok(Reducer(out))
    }
}

impl Drop for Pg {
    fn drop(&mut self) {
        // SAFETY: created by ssl_group_new, freed once.
        unsafe { ssl_group_free(self.0) }
    }
}

/// A DDP Reducer handle owned by Rust.
pub struct Reducer(*mut SslReducer);

// SAFETY: used from the training thread; its hooks run in autograd's.
unsafe impl Send for Reducer {}

impl Reducer {
    pub fn prepare_forward(&self) -> Result<(), String> {
        // SAFETY: a live reducer.
        check(unsafe { ssl_reducer_prepare_forward(self.0) })
    }

    pub fn prepare_backward(&self, outputs: &[&Tensor]) -> Result<(), String> {
        let ptrs: Vec<*mut c_void> = outputs.iter().map(|t| ptr(t)).collect();
        // SAFETY: the tensors outlive the call; the shim copies the handles.
        check(unsafe { ssl_reducer_prepare_backward(self.0, ptrs.as_ptr(), ptrs.len()) })
    }
}

impl Drop for Reducer {
    fn drop(&mut self) {
        // SAFETY: created by ssl_reducer_new, freed once. A failure while
        // removing its hooks cannot be reported from a destructor.
        let _ = check(unsafe { ssl_reducer_free(self.0) });
    }
}
