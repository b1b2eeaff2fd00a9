"""The subset of the array API standard that ``dpcore/`` uses: the contract of the TF and Paddle shims.

Keep this list true: a test greps ``dpcore/`` for ``xp.<name>`` and checks every name is listed here,
and each shim is tested against NumPy / array-api-strict on every entry.
"""

FUNCTIONS = (
    "abs", "arange", "asarray", "astype", "broadcast_to", "clip", "concat", "exp", "logaddexp",
    "matmul", "matrix_transpose", "ones_like", "reshape", "sqrt", "sum", "take", "tanh", "where",
    "zeros", "zeros_like",
)
DTYPES = ("bool", "int32", "int64", "float32", "float64")
# beyond the standard: the compute dtypes of training.mixed_precision (dpcore/network.py casts to them)
MIXED_DTYPES = ("float16", "bfloat16")
# operators on arrays: + - * / unary-, @, ==, >=, >, <, &, ~, indexing with ints/slices/None/Ellipsis,
# attributes .shape (tuple of ints), .ndim, .dtype
# dpcore extensions a shim may provide: dpcore_segment_sum(values (m, c), index (m,), n) -> (n, c),
# dpcore_device(x)
EXTENSIONS = ("dpcore_segment_sum", "dpcore_device")
