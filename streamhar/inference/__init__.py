"""Integer inference: export a trained bundle to an integer-only network, store it as a `.shm`
file, and run it with numpy reference ops that the firmware's C kernels mirror op for op.

    export_bundle(bundle) -> IntegerModel          export.py  (folding of scales, BN, PACT)
    save_shm(model, path) / load_shm(path)         int_format.py  (docs/FORMAT.md)
    IntegerEngine(model).run(x_int8, width)        engine.py
    ops.*                                          ops.py  (one function per integer op)
"""
from .engine import IntegerEngine
from .export import ExportError, export_bundle
from .int_format import FORMAT_VERSION, ShmFormatError, load_shm, save_shm
from .model import LOGIT_SCALE, IntegerModel, IntegerModelError, Requant

__all__ = ["FORMAT_VERSION", "LOGIT_SCALE", "ExportError", "IntegerEngine", "IntegerModel", "IntegerModelError",
           "Requant", "ShmFormatError", "export_bundle", "load_shm", "save_shm"]
