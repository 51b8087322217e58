//! One error type for the whole engine. Every failure on user input (shapes,
//! files, arguments, adapters) comes back as an [`Error`], never a panic.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in resformer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable adapter was found at all.
    #[error("no GPU or software adapter found ({detail}). On Debian/Ubuntu `apt-get install mesa-vulkan-drivers libvulkan1` provides lavapipe, a Vulkan device that runs on the CPU; or use the CPU path (--backend cpu)")]
    NoAdapter { detail: String },

    /// `WGPU_ADAPTER_NAME` matched none of the adapters.
    #[error("WGPU_ADAPTER_NAME={wanted:?} matches no adapter; available: {available:?}")]
    AdapterNotFound { wanted: String, available: Vec<String> },

    /// The adapter refused to create a device.
    #[error("adapter {adapter:?} could not create a device: {reason}")]
    RequestDevice { adapter: String, reason: String },

    /// An operand's shape does not fit the op.
    #[error("{op}: {what} expected shape {expected:?}, got {got:?}")]
    ShapeMismatch { op: &'static str, what: &'static str, expected: Vec<usize>, got: Vec<usize> },

    /// A dimension is zero (every kernel needs at least one element).
    #[error("{op}: {what} has a zero-sized dimension: shape {shape:?}")]
    ZeroSized { op: &'static str, what: &'static str, shape: Vec<usize> },

    /// An op argument is out of range (head count, head dim, ...).
    #[error("{op}: {what}")]
    InvalidArgument { op: &'static str, what: String },

    /// A buffer or a dispatch exceeds one of the device's limits.
    #[error("{op}: {what} with shape {shape:?} needs {needed} but the device's {limit_name} is {limit}")]
    LimitExceeded {
        op: &'static str,
        what: &'static str,
        shape: Vec<usize>,
        needed: u64,
        limit_name: &'static str,
        limit: u64,
    },

    /// A data buffer's length does not match the shape it claims.
    #[error("{what}: {len} values do not fill shape {shape:?} ({expected} values)")]
    DataLength { what: &'static str, len: usize, shape: Vec<usize>, expected: usize },

    /// A shader or pipeline failed to compile on this device.
    #[error("shader {kernel}: {reason}")]
    Shader { kernel: &'static str, reason: String },

    /// The device reported an error (validation, out of memory, lost device, mapping).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A weights or input file is malformed.
    #[error("{path}: {reason}")]
    File { path: String, reason: String },

    /// Plain I/O failure on a named file.
    #[error("{path}: {source}")]
    Io { path: String, source: std::io::Error },
}
