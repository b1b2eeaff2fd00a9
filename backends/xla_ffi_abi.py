"""The XLA FFI C ABI that the fused table kernel's handlers read (:mod:`dpcore.backends.table_kernel_ffi`): the
struct layouts and values of jaxlib's ``xla/ffi/api/c_api.h`` they rely on, defined once here, and the check that
the installed jaxlib's header still says so (:func:`abi_mismatch`; where it does not, jax runs the array version:
a handler reading another layout would crash the process).  No numba here: the check runs without it.
"""

from __future__ import annotations

import re
from pathlib import Path

import jax

# the fields of jaxlib's xla/ffi/api/c_api.h that the handlers read (backends/table_kernel_ffi.py), in order
_ABI_STRUCTS = {
    "XLA_FFI_Extension_Base": ("size_t struct_size", "XLA_FFI_Extension_Type type",
                               "struct XLA_FFI_Extension_Base* next"),
    "XLA_FFI_Api_Version": ("size_t struct_size", "XLA_FFI_Extension_Base* extension_start", "int major_version",
                            "int minor_version"),
    "XLA_FFI_Buffer": ("size_t struct_size", "XLA_FFI_Extension_Base* extension_start", "XLA_FFI_DataType dtype",
                       "void* data", "int64_t rank", "int64_t* dims"),
    "XLA_FFI_Args": ("size_t struct_size", "XLA_FFI_Extension_Base* extension_start", "int64_t size",
                     "XLA_FFI_ArgType* types", "void** args"),
    "XLA_FFI_Rets": ("size_t struct_size", "XLA_FFI_Extension_Base* extension_start", "int64_t size",
                     "XLA_FFI_RetType* types", "void** rets"),
    "XLA_FFI_CallFrame": ("size_t struct_size", "XLA_FFI_Extension_Base* extension_start", "const XLA_FFI_Api* api",
                          "XLA_FFI_ExecutionContext* ctx", "XLA_FFI_ExecutionStage stage", "XLA_FFI_Args args",
                          "XLA_FFI_Rets rets"),
    "XLA_FFI_Metadata": ("size_t struct_size", "XLA_FFI_Api_Version api_version", "XLA_FFI_Handler_Traits traits",
                         "XLA_FFI_TypeId state_type_id"),
    "XLA_FFI_Metadata_Extension": ("XLA_FFI_Extension_Base extension_base", "XLA_FFI_Metadata* metadata"),
}
# the values the handlers use (backends/table_kernel_ffi.py imports them), checked against the header
API_MAJOR, API_MINOR = 0, 3  # the FFI API version the handlers answer XLA's metadata query with
F32, F64 = 11, 12  # XLA_FFI_DataType
STAGE_EXECUTE = 3  # XLA_FFI_ExecutionStage
EXTENSION_METADATA = 1  # XLA_FFI_Extension_Type
_ABI_VALUES = {"XLA_FFI_API_MAJOR": API_MAJOR, "XLA_FFI_DataType_F32": F32, "XLA_FFI_DataType_F64": F64,
               "XLA_FFI_ExecutionStage_EXECUTE": STAGE_EXECUTE, "XLA_FFI_Extension_Metadata": EXTENSION_METADATA}


def abi_mismatch() -> str | None:
    """None where jaxlib's FFI header describes the struct layouts and values the handlers read, else what differs
    (then the array version runs: a handler reading another layout would crash the process)."""
    if not hasattr(jax, "ffi") or not hasattr(jax.ffi, "ffi_call"):
        return f"jax {jax.__version__} has no jax.ffi"
    header = Path(jax.ffi.include_dir()) / "xla" / "ffi" / "api" / "c_api.h"
    if not header.is_file():
        return f"no {header}"
    text = re.sub(r"//[^\n]*", "", header.read_text())
    for name, fields in _ABI_STRUCTS.items():
        body = re.search(r"struct " + name + r" \{(.*?)\};", text, re.S)
        found = tuple(" ".join(f.split()) for f in body.group(1).split(";"))[: len(fields)] if body else ()
        if found != fields:
            return f"{name} in {header} is not the layout the handlers read"
    for name, value in _ABI_VALUES.items():
        if not re.search(r"\b" + name + r"\b\s*=?\s*" + str(value) + r"\b", text):
            return f"{name} is not {value} in {header}"
    return None
