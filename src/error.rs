//! One error type for the whole engine. Every failure on user input (shapes,
//! files, arguments, adapters) comes back as an [`Error`], never a panic.

/// Result alias used throughout the crate.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// Everything that can go wrong in resformer.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// No usable adapter was found at all.
    #[error("no GPU or software adapter found ({detail}). On Debian/Ubuntu `apt-get install mesa-vulkan-drivers libvulkan1` provides lavapipe, a Vulkan device that runs on the CPU; or use the CPU backend")]
    NoAdapter {
        /// Which backends were searched.
        detail: String,
    },

    /// The adapter asked for (by name or by index) is not there.
    #[error("{wanted} matches no adapter; available: {available:?}")]
    AdapterNotFound {
        /// What was asked for: `adapter name "a100"`, `gpu:3`.
        wanted: String,
        /// The adapters it was chosen among, with their backends.
        available: Vec<String>,
    },

    /// An environment variable or a spelled-out option has a value the engine does not know.
    #[error("{name}={value:?} is not valid: expected {expected}")]
    BadSetting {
        /// The variable (`RESFORMER_MATMUL`) or option (`device`).
        name: &'static str,
        /// The value given.
        value: String,
        /// The accepted values.
        expected: String,
    },

    /// A model, stack or input would need more memory than the host or device has.
    #[error("{what} needs {needed} but {available}; {hint}")]
    TooLarge {
        /// What was asked for, with its sizes.
        what: String,
        /// How much it needs, in words (`38.2 GB of host memory`).
        needed: String,
        /// What there is (`20.1 GB is available`).
        available: String,
        /// Which size to change.
        hint: String,
    },

    /// The adapter refused to create a device.
    #[error("adapter {adapter:?} could not create a device: {reason}")]
    RequestDevice {
        /// The adapter's name.
        adapter: String,
        /// wgpu's reason.
        reason: String,
    },

    /// An operand's shape does not fit the op.
    #[error("{op}: {what} expected shape {expected:?}, got {got:?}")]
    ShapeMismatch {
        /// The op (kernel stem).
        op: &'static str,
        /// The operand.
        what: &'static str,
        /// The shape the op needs.
        expected: Vec<usize>,
        /// The shape it was given.
        got: Vec<usize>,
    },

    /// A dimension is zero (every kernel needs at least one element).
    #[error("{op}: {what} has a zero-sized dimension: shape {shape:?}")]
    ZeroSized {
        /// The op.
        op: &'static str,
        /// The operand or dimension.
        what: &'static str,
        /// The shape given.
        shape: Vec<usize>,
    },

    /// An op argument is out of range (head count, head dim, ...).
    #[error("{op}: {what}")]
    InvalidArgument {
        /// The op, command-line option or component.
        op: &'static str,
        /// What is wrong, with the expected and found values.
        what: String,
    },

    /// A buffer or a dispatch exceeds one of the device's limits.
    #[error("{op}: {what} with shape {shape:?} needs {needed} but the device's {limit_name} is {limit}")]
    LimitExceeded {
        /// The op.
        op: &'static str,
        /// The buffer or dispatch dimension.
        what: &'static str,
        /// Its shape.
        shape: Vec<usize>,
        /// Bytes (or workgroups) it needs.
        needed: u64,
        /// The wgpu limit's name.
        limit_name: &'static str,
        /// The limit's value on this device.
        limit: u64,
    },

    /// A data buffer's length does not match the shape it claims.
    #[error("{what}: {len} values do not fill shape {shape:?} ({expected} values)")]
    DataLength {
        /// What was being uploaded or written.
        what: &'static str,
        /// Values given.
        len: usize,
        /// The shape claimed.
        shape: Vec<usize>,
        /// Values the shape holds.
        expected: usize,
    },

    /// A shader or pipeline failed to compile on this device.
    #[error("shader {kernel}: {reason}")]
    Shader {
        /// The kernel stem.
        kernel: &'static str,
        /// The driver's or naga's message.
        reason: String,
    },

    /// The device reported an error (validation, out of memory, lost device, mapping).
    #[error("GPU error: {0}")]
    Gpu(String),

    /// A weights or input file is malformed.
    #[error("{path}: {reason}")]
    File {
        /// The file as named by the user.
        path: String,
        /// What is wrong: the tensor, expected against found.
        reason: String,
    },

    /// Plain I/O failure on a named file.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: String,
        /// The OS error.
        source: std::io::Error,
    },
}
