//! Device buffers and the borrowed views the launch wrappers take.
//!
//! A [`View`] / [`ViewMut`] is a device pointer plus a length, borrowed from a [`GpuBuf`]:
//! Rust's borrow rules then keep an output from aliasing an input unless a wrapper asks for
//! in-place use explicitly. Sub-views (`sub`) give the offset slices the forward pass needs
//! (the gate half of the q|gate projection, one token's row, ...).

use std::marker::PhantomData;

use cudarc::driver::{CudaSlice, DevicePtr, DeviceRepr};
use simd::GgmlType;

use super::error::{GpuError, Result};

/// An owned device allocation of `len` elements of `T`.
pub struct GpuBuf<T> {
    pub(crate) slice: CudaSlice<T>,
    pub(crate) ptr: u64,
}

impl<T: DeviceRepr> GpuBuf<T> {
    pub(crate) fn from_slice(slice: CudaSlice<T>) -> GpuBuf<T> {
        // Event tracking is off (single stream), so the returned guard does nothing.
        let ptr = {
            let (ptr, _guard) = slice.device_ptr(slice.stream());
            ptr
        };
        GpuBuf { ptr, slice }
    }

    pub fn len(&self) -> usize {
        self.slice.len()
    }

    pub fn is_empty(&self) -> bool {
        self.slice.len() == 0
    }

    pub fn view(&self) -> View<'_, T> {
        View {
            ptr: self.ptr,
            len: self.len(),
            _m: PhantomData,
        }
    }

    pub fn view_mut(&mut self) -> ViewMut<'_, T> {
        ViewMut {
            ptr: self.ptr,
            len: self.len(),
            _m: PhantomData,
        }
    }
}

/// Read-only device slice.
#[derive(Clone, Copy)]
pub struct View<'a, T> {
    pub(crate) ptr: u64,
    len: usize,
    _m: PhantomData<&'a [T]>,
}

/// Writable device slice.
pub struct ViewMut<'a, T> {
    pub(crate) ptr: u64,
    len: usize,
    _m: PhantomData<&'a mut [T]>,
}

fn check_sub(len: usize, start: usize, n: usize) -> Result<()> {
    match start.checked_add(n) {
        Some(end) if end <= len => Ok(()),
        _ => Err(GpuError::shape(
            "view",
            format!("sub-view [{start}, {start}+{n}) of a view of {len}"),
        )),
    }
}

impl<'a, T> View<'a, T> {
    /// The device address (kernels outside the typed wrappers: `Gpu::mmv_exact`).
    pub fn device_ptr(&self) -> u64 {
        self.ptr
    }

    /// A view of `len` elements at `ptr`, which must lie inside a buffer borrowed for `'a`
    /// (crate-internal reinterpretations of a byte buffer, `gpu::share`).
    pub(crate) fn from_raw(ptr: u64, len: usize) -> View<'a, T> {
        View {
            ptr,
            len,
            _m: PhantomData,
        }
    }

    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `[start, start + n)`.
    pub fn sub(self, start: usize, n: usize) -> Result<View<'a, T>> {
        check_sub(self.len, start, n)?;
        Ok(View {
            ptr: self.ptr + (start * std::mem::size_of::<T>()) as u64,
            len: n,
            _m: PhantomData,
        })
    }
}

impl<'a, T> ViewMut<'a, T> {
    pub fn len(&self) -> usize {
        self.len
    }

    pub fn is_empty(&self) -> bool {
        self.len == 0
    }

    /// Elements `[start, start + n)`.
    pub fn sub(self, start: usize, n: usize) -> Result<ViewMut<'a, T>> {
        check_sub(self.len, start, n)?;
        Ok(ViewMut {
            ptr: self.ptr + (start * std::mem::size_of::<T>()) as u64,
            len: n,
            _m: PhantomData,
        })
    }

    /// A shorter-lived copy, so one buffer can be passed to several calls in turn.
    pub fn reborrow(&mut self) -> ViewMut<'_, T> {
        ViewMut {
            ptr: self.ptr,
            len: self.len,
            _m: PhantomData,
        }
    }

    pub fn as_view(&self) -> View<'_, T> {
        View {
            ptr: self.ptr,
            len: self.len,
            _m: PhantomData,
        }
    }
}

/// A weight matrix on the device, in its GGUF encoding: `rows` rows of `cols` weights,
/// row-major, `row_bytes` each (blocks back to back, as in the file, unless `split`).
pub struct GpuMatrix {
    pub name: String,
    pub ty: GgmlType,
    pub rows: usize,
    pub cols: usize,
    pub row_bytes: usize,
    /// Rows in the row-split layout of `gpu::layout` (Q6_K, Q8_0) rather than the file's.
    pub split: bool,
    pub(crate) data: GpuBuf<u8>,
}

impl GpuMatrix {
    pub fn bytes(&self) -> usize {
        self.data.len()
    }
}
