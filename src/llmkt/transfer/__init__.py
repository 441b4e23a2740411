"""Knowledge transfer (LLM-KT): a named layer of any llmkt model reconstructs knowledge vectors during a transfer
phase (docs/transfer.md). Everything here takes objects; ``llmkt.experiments.transfer`` builds them from configs.

    from llmkt.transfer import TransferSpec, build_transfer
    setup = build_transfer(TransferSpec(layer="blocks.1", alpha=0.1), model, split, vectors, batch, device,
                           epochs=20, seed=0)
    Trainer(model, epochs=20, callbacks=setup.callbacks, ...)
"""

from llmkt.transfer.callback import KnowledgeTransfer, TransferSettings
from llmkt.transfer.layers import find_layer, layer_names, output_shapes
from llmkt.transfer.reduce import Reducer
from llmkt.transfer.schedule import Phase, PhaseFreezer, Step, phase_at, resolve_phases
from llmkt.transfer.setup import (DEFAULT_LAYERS, ReducerSpec, TransferPlan, TransferSetup, TransferSpec, build_transfer,
                                  default_layer, layer_width, plan_transfer)

__all__ = ["DEFAULT_LAYERS", "KnowledgeTransfer", "Phase", "PhaseFreezer", "Reducer", "ReducerSpec", "Step",
           "TransferPlan", "TransferSettings", "TransferSetup", "TransferSpec", "build_transfer", "default_layer",
           "find_layer", "layer_names", "layer_width", "output_shapes", "phase_at", "plan_transfer",
           "resolve_phases"]
