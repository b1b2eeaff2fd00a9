"""dpcore: DeePMD-style "fit energy" models written once against the Python array API.

``import dpcore`` imports no deep-learning framework; backends are loaded by name on demand.
"""

from .model.energy_model import EnergyModel
from .model.factory import load, model_from_config
from .model.spin_model import SpinEnergyModel

__version__ = "0.1.0"
__all__ = ["EnergyModel", "SpinEnergyModel", "load", "model_from_config", "__version__"]
