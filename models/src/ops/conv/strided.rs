//! A bounds-checked front end to the `gemm` crate for matrices that are strided views into
//! slices: a shifted time window of a `[C, T]` signal, one tap of a `[C_out, C_in, K]` kernel,
//! or a transposed view of either, all without copying.

/// Where a `rows x cols` matrix lies in a slice: element `(r, c)` is at
/// `offset + r * row_stride + c * col_stride`.
#[derive(Debug, Clone, Copy)]
pub(super) struct View {
    pub offset: usize,
    pub rows: usize,
    pub cols: usize,
    pub row_stride: usize,
    pub col_stride: usize,
}

impl View {
    /// A row-major `rows x cols` block whose rows are `row_stride` apart.
    pub fn row_major(offset: usize, rows: usize, cols: usize, row_stride: usize) -> Self {
        Self {
            offset,
            rows,
            cols,
            row_stride,
            col_stride: 1,
        }
    }

    /// The same elements read as the transposed matrix.
    pub fn t(self) -> Self {
        Self {
            offset: self.offset,
            rows: self.cols,
            cols: self.rows,
            row_stride: self.col_stride,
            col_stride: self.row_stride,
        }
    }

    /// One past the largest index the view touches (`rows`, `cols` >= 1).
    fn end(&self) -> usize {
        self.offset + (self.rows - 1) * self.row_stride + (self.cols - 1) * self.col_stride + 1
    }

    /// Whether distinct `(r, c)` map to distinct indices: one stride steps over a whole
    /// row or column of the other.
    fn is_injective(&self) -> bool {
        self.rows <= 1
            || self.cols <= 1
            || self.row_stride >= self.cols * self.col_stride
            || self.col_stride >= self.rows * self.row_stride
    }
}

/// `dst += lhs · rhs` on strided views, single-threaded (callers spread work over threads
/// themselves).
///
/// # Panics
/// When the shapes do not chain (`dst: m x n`, `lhs: m x k`, `rhs: k x n`), a view reaches
/// past its slice, or `dst` maps two elements to one index. These are programming errors of
/// the callers in this module, which derive every view from checked tensor shapes.
pub(super) fn gemm_acc(dst: &mut [f32], d: View, lhs: &[f32], l: View, rhs: &[f32], r: View) {
    // Check the shapes and bounds; empty products add nothing.
    assert!(
        d.rows == l.rows && l.cols == r.rows && r.cols == d.cols,
        "gemm_acc: shapes {d:?} = {l:?} x {r:?} do not chain"
    );
    if d.rows == 0 || d.cols == 0 || l.cols == 0 {
        return;
    }
    assert!(
        d.end() <= dst.len(),
        "gemm_acc: dst {d:?} past {}",
        dst.len()
    );
    assert!(
        l.end() <= lhs.len(),
        "gemm_acc: lhs {l:?} past {}",
        lhs.len()
    );
    assert!(
        r.end() <= rhs.len(),
        "gemm_acc: rhs {r:?} past {}",
        rhs.len()
    );
    assert!(d.is_injective(), "gemm_acc: dst {d:?} overlaps itself");
    let stride = |s: usize| isize::try_from(s).expect("stride fits isize");

    // SAFETY: the asserts above keep every element gemm reads or writes inside its slice
    // (strides are non-negative, so the extreme index is `end() - 1`), `dst` is injective so
    // no element is written twice per product, and `dst` is a `&mut` borrow, so it cannot
    // alias `lhs` or `rhs`. `gemm` is only handed f32, one of its supported types.
    unsafe {
        gemm::gemm(
            d.rows,
            d.cols,
            l.cols,
            dst.as_mut_ptr().add(d.offset),
            stride(d.col_stride),
            stride(d.row_stride),
            true,
            lhs.as_ptr().add(l.offset),
            stride(l.col_stride),
            stride(l.row_stride),
            rhs.as_ptr().add(r.offset),
            stride(r.col_stride),
            stride(r.row_stride),
            1.0f32,
            1.0f32,
            false,
            false,
            false,
            gemm::Parallelism::None,
        );
    }
}
