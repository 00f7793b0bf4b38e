"""Library chatter (transformers FutureWarnings, bitsandbytes "kernels" notices, tokenizers
fork warnings) stays out of the terminal and the job logs unless the user asks with `--verbose`
(or APC_VERBOSE=1). The choice is also put in the environment, so detached job workers and
their libraries follow it."""

from __future__ import annotations

import logging
import os
import warnings

_QUIET_ENV = {
    "TRANSFORMERS_VERBOSITY": "error",
    "TRANSFORMERS_NO_ADVISORY_WARNINGS": "1",
    "BITSANDBYTES_NOWELCOME": "1",
    "TOKENIZERS_PARALLELISM": "false",
    "PYTHONWARNINGS": "ignore",
}
_LIBRARIES = ("transformers", "bitsandbytes", "peft", "trl", "accelerate", "datasets", "torch", "httpx", "huggingface_hub")


def verbose_requested(environ=None) -> bool:
    environ = os.environ if environ is None else environ
    return str(environ.get("APC_VERBOSE", "")).strip().lower() in {"1", "true", "yes"}


def quiet_libraries(verbose: bool = False) -> None:
    """Hide library warnings and logs (verbose=False) or let them through (verbose=True)."""
    verbose = verbose or verbose_requested()
    if verbose:
        os.environ["APC_VERBOSE"] = "1"
        return
    for key, value in _QUIET_ENV.items():
        os.environ.setdefault(key, value)
    warnings.simplefilter("ignore")
    logging.getLogger().setLevel(logging.ERROR)
    for name in _LIBRARIES:
        logging.getLogger(name).setLevel(logging.ERROR)
