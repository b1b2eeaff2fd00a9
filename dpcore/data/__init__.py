"""Training data: deepmd/npy and deepmd/hdf5 systems, batching, neighbour-list cache.

Host side, NumPy only (h5py imported lazily for .h5 systems).

>>> systems = load_systems(["water/data_0", "water/data_1"], type_map=["O", "H"])
>>> sampler = BatchSampler(systems, batch_size="auto", seed=10)
>>> batch = sampler.next_batch()        # dict of NumPy arrays, see dpcore.data.batch
"""

from .batch import BatchSampler, load_systems, samplers_from_config
from .labels import STANDARD_LABELS, LabelSpec, label_specs, label_specs_from_config
from .nlist_cache import NeighborListCache
from .sampling import parse_batch_size, process_sys_probs, prob_sys_size_ext, system_probabilities
from .store import DataError, DirStore, H5Store, find_systems
from .system import DeepmdSystem

__all__ = [
    "BatchSampler",
    "DataError",
    "DeepmdSystem",
    "DirStore",
    "H5Store",
    "LabelSpec",
    "NeighborListCache",
    "STANDARD_LABELS",
    "find_systems",
    "label_specs",
    "label_specs_from_config",
    "load_systems",
    "parse_batch_size",
    "prob_sys_size_ext",
    "process_sys_probs",
    "samplers_from_config",
    "system_probabilities",
]
