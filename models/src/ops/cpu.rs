//! Helpers shared by the fused CPU ops: reading f32 storage and spreading batch items over
//! threads.

use candle_core::backend::BackendStorage;
use candle_core::{bail, CpuStorage, Layout, Storage, Tensor};

/// Work below this many (batch item x time step) pairs runs on the calling thread: spawning
/// threads costs tens of microseconds, more than a short scan.
const MIN_STEPS_FOR_THREADS: usize = 4096;

/// The contiguous f32 data behind `storage` as described by `layout`.
///
/// Fails, naming `op` and `what`, when the storage is not f32 or the layout is strided.
pub(crate) fn f32_slice<'a>(
    storage: &'a CpuStorage,
    layout: &Layout,
    op: &str,
    what: &str,
) -> candle_core::Result<&'a [f32]> {
    let data = match storage {
        CpuStorage::F32(data) => data.as_slice(),
        other => bail!("{op}: {what} must be f32, got {:?}", other.dtype()),
    };
    match layout.contiguous_offsets() {
        Some((start, end)) => Ok(&data[start..end]),
        None => bail!(
            "{op}: {what} must be contiguous, got strides {:?}",
            layout.stride()
        ),
    }
}

/// Copies a CPU f32 tensor's elements, in row-major order, into a new vector.
pub(crate) fn to_f32_vec(tensor: &Tensor, op: &str, what: &str) -> candle_core::Result<Vec<f32>> {
    with_f32(tensor, op, what, |data| Ok(data.to_vec()))
}

/// Runs `f` on the row-major f32 data of a CPU tensor without copying it when it is already
/// contiguous.
pub(crate) fn with_f32<R>(
    tensor: &Tensor,
    op: &str,
    what: &str,
    f: impl FnOnce(&[f32]) -> candle_core::Result<R>,
) -> candle_core::Result<R> {
    let tensor = tensor.contiguous()?;
    let (storage, layout) = tensor.storage_and_layout();
    match &*storage {
        Storage::Cpu(cpu) => f(f32_slice(cpu, layout, op, what)?),
        _ => bail!("{op}: {what} must be on the CPU, got {:?}", tensor.device()),
    }
}

/// Runs `work` once per job, spreading the jobs over up to `candle_core::utils::get_num_threads()`
/// scoped threads (the calling thread takes the first share).
///
/// `steps_per_job` is the number of time steps each job scans; short work stays on the calling
/// thread.
pub(crate) fn run_jobs<J: Send>(jobs: Vec<J>, steps_per_job: usize, work: impl Fn(J) + Sync) {
    // Decide how many threads the work is worth.
    let total_steps = jobs.len().saturating_mul(steps_per_job);
    let threads = if total_steps < MIN_STEPS_FOR_THREADS {
        1
    } else {
        candle_core::utils::get_num_threads().clamp(1, jobs.len().max(1))
    };
    if threads <= 1 {
        jobs.into_iter().for_each(work);
        return;
    }

    // Deal the jobs out in contiguous groups of nearly equal size.
    let per_thread = jobs.len().div_ceil(threads);
    let mut groups: Vec<Vec<J>> = Vec::with_capacity(threads);
    let mut jobs = jobs.into_iter().peekable();
    while jobs.peek().is_some() {
        groups.push(jobs.by_ref().take(per_thread).collect());
    }

    // Run them: the calling thread takes the first group.
    let work = &work;
    std::thread::scope(|scope| {
        let mut groups = groups.into_iter();
        let first = groups.next();
        for group in groups {
            scope.spawn(move || group.into_iter().for_each(work));
        }
        if let Some(group) = first {
            group.into_iter().for_each(work);
        }
    });
}

/// Outputs per block of [`add_rows_scaled`]: 8 AVX registers of accumulators, enough
/// independent add chains to hide the add latency.
const ROW_BLOCK: usize = 64;
/// Lanes of the partial sums in [`dot_rows`]; a fixed lane count keeps the summation order,
/// and so the result, the same on every instruction set.
const DOT_LANES: usize = 8;

/// `acc += Σ_k v[k] rows[k]` for `rows: [v.len(), acc.len()]` row-major, i.e. `acc += Rᵀ v`.
///
/// Written as a sum of scaled rows (no float reduction), blocked so that a block of `acc`
/// stays in registers across all rows.
#[inline(always)]
pub(crate) fn add_rows_scaled(acc: &mut [f32], rows: &[f32], v: &[f32]) {
    let n = acc.len();
    debug_assert_eq!(rows.len(), n * v.len());
    let full = n - n % ROW_BLOCK;

    // Whole blocks, accumulated in a local array the compiler keeps in registers.
    for start in (0..full).step_by(ROW_BLOCK) {
        let mut block = [0.0f32; ROW_BLOCK];
        block.copy_from_slice(&acc[start..start + ROW_BLOCK]);
        for (k, &scale) in v.iter().enumerate() {
            let row = &rows[k * n + start..k * n + start + ROW_BLOCK];
            for (b, &w) in block.iter_mut().zip(row) {
                *b += w * scale;
            }
        }
        acc[start..start + ROW_BLOCK].copy_from_slice(&block);
    }

    // The remainder of each row.
    if full < n {
        for (k, &scale) in v.iter().enumerate() {
            let row = &rows[k * n + full..(k + 1) * n];
            for (a, &w) in acc[full..].iter_mut().zip(row) {
                *a += w * scale;
            }
        }
    }
}

/// `out[k] = rows[k] · d` for `rows: [out.len(), d.len()]` row-major, i.e. `out = R d`.
///
/// Each dot product keeps [`DOT_LANES`] partial sums, added together at the end.
#[inline(always)]
pub(crate) fn dot_rows(out: &mut [f32], rows: &[f32], d: &[f32]) {
    let n = d.len();
    debug_assert_eq!(rows.len(), n * out.len());
    let full = n - n % DOT_LANES;
    for (o, row) in out.iter_mut().zip(rows.chunks_exact(n)) {
        let mut lanes = [0.0f32; DOT_LANES];
        for (w, x) in row[..full]
            .chunks_exact(DOT_LANES)
            .zip(d[..full].chunks_exact(DOT_LANES))
        {
            for l in 0..DOT_LANES {
                lanes[l] += w[l] * x[l];
            }
        }
        let mut sum = row[full..]
            .iter()
            .zip(&d[full..])
            .map(|(w, x)| w * x)
            .sum::<f32>();
        for lane in lanes {
            sum += lane;
        }
        *o = sum;
    }
}

/// `rows[k] += v[k] d` for `rows: [v.len(), d.len()]` row-major: a rank-1 update `R += v dᵀ`.
#[inline(always)]
pub(crate) fn add_outer(rows: &mut [f32], v: &[f32], d: &[f32]) {
    debug_assert_eq!(rows.len(), v.len() * d.len());
    for (row, &scale) in rows.chunks_exact_mut(d.len()).zip(v) {
        for (r, &x) in row.iter_mut().zip(d) {
            *r += scale * x;
        }
    }
}

/// Adds `src` into `dst` element-wise and zeroes `src`.
#[inline(always)]
pub(crate) fn drain_into(dst: &mut [f32], src: &mut [f32]) {
    for (d, s) in dst.iter_mut().zip(src.iter_mut()) {
        *d += *s;
        *s = 0.0;
    }
}

/// `[rows, cols]` row-major to `[cols, rows]` row-major.
pub(crate) fn transpose(matrix: &[f32], rows: usize, cols: usize) -> Vec<f32> {
    let mut out = vec![0.0f32; rows * cols];
    for (r, row) in matrix.chunks_exact(cols).enumerate() {
        for (c, &value) in row.iter().enumerate() {
            out[c * rows + r] = value;
        }
    }
    out
}

/// Whether the AVX2 code paths of the scans may run on this CPU (checked at run time, cached
/// by the standard library).
pub(crate) fn has_avx2() -> bool {
    #[cfg(target_arch = "x86_64")]
    {
        std::arch::is_x86_feature_detected!("avx2")
    }
    #[cfg(not(target_arch = "x86_64"))]
    {
        false
    }
}

/// Defines `$name` that runs `$body` (an `#[inline(always)]` function) compiled for AVX2 when
/// the CPU has it, and compiled for the baseline target otherwise. Both compile the same
/// source, and the kernels avoid `mul_add` and float reductions whose order the compiler could
/// pick, so both give the same results.
macro_rules! dispatch_avx2 {
    ($(#[$meta:meta])* fn $name:ident = $body:ident($($arg:ident: $ty:ty),* $(,)?)) => {
        $(#[$meta])*
        fn $name($($arg: $ty),*) {
            #[cfg(target_arch = "x86_64")]
            {
                #[target_feature(enable = "avx2")]
                fn with_avx2($($arg: $ty),*) {
                    $body($($arg),*)
                }
                if $crate::ops::cpu::has_avx2() {
                    // SAFETY: `has_avx2` just confirmed that this CPU supports AVX2, the only
                    // feature `with_avx2` is compiled for.
                    return unsafe { with_avx2($($arg),*) };
                }
            }
            $body($($arg),*)
        }
    };
}
pub(crate) use dispatch_avx2;

/// Most buffers kept by [`recycle_buffer`]; enough for a few stacked recurrent layers.
const MAX_POOLED_BUFFERS: usize = 4;

/// Large activation buffers handed back by dropped ops, reused by the next forward pass.
///
/// Buffers of hundreds of megabytes come fresh from the kernel on every allocation, and
/// faulting their pages in costs more than the scan that fills them.
static BUFFER_POOL: std::sync::Mutex<Vec<Vec<f32>>> = std::sync::Mutex::new(Vec::new());

/// A buffer of `len` floats with unspecified contents (reused from the pool when one is large
/// enough): the caller must overwrite every element.
pub(crate) fn pooled_buffer(len: usize) -> Vec<f32> {
    let mut pool = BUFFER_POOL.lock().unwrap_or_else(|e| e.into_inner());
    let best = (0..pool.len())
        .filter(|&k| pool[k].capacity() >= len)
        .min_by_key(|&k| pool[k].capacity());
    let mut buffer = match best {
        Some(k) => pool.swap_remove(k),
        None => Vec::new(),
    };
    drop(pool);
    buffer.truncate(len);
    buffer.resize(len, 0.0);
    buffer
}

/// Returns a buffer to the pool for [`pooled_buffer`], dropping the smallest one beyond
/// [`MAX_POOLED_BUFFERS`].
pub(crate) fn recycle_buffer(buffer: Vec<f32>) {
    let mut pool = BUFFER_POOL.lock().unwrap_or_else(|e| e.into_inner());
    pool.push(buffer);
    if pool.len() > MAX_POOLED_BUFFERS {
        if let Some(k) = (0..pool.len()).min_by_key(|&k| pool[k].capacity()) {
            pool.swap_remove(k);
        }
    }
}
