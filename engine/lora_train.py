"""What LoRA training (DPO and EU/SFT) shares: the base model, device and precision rules, the
memory check, chat-message shaping, and the TrainerCallback that reports progress and stops.

Precision rules: CPU trains in fp32 with bf16/fp16 and gradient checkpointing off; a CUDA GPU in
bf16 (fp16 where bf16 is missing) with gradient checkpointing; 4-bit (QLoRA) only on CUDA.
"""

from __future__ import annotations

import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

from engine.errors import ConfigError, InputError, ModelError

Progress = Callable[[int, int, str], None]
MetricsCallback = Callable[[int, dict[str, float]], None]
CheckpointCallback = Callable[[str], None]

GIB = 1024**3
_PROBE = "APC-SYSTEM-PROBE-5c1d"


@dataclass(frozen=True)
class BaseModel:
    """A trainable base: the local path or hub id, and the spec it came from."""

    spec: str
    path: str


def resolve_base(spec: str) -> BaseModel:
    """`tiny` or `hf:ID_OR_PATH`; adapters and API models cannot be a training base."""
    from engine.backends import parse_spec

    parsed = parse_spec(spec)
    if parsed.scheme == "tiny":
        from engine.backends.tiny import tiny_model_dir

        return BaseModel(spec, str(tiny_model_dir()))
    if parsed.scheme != "hf":
        raise ConfigError(f"model spec {spec!r}: only local transformers models can be trained; use tiny or hf:ID_OR_PATH")
    if parsed.adapter:
        raise ConfigError(
            f"model spec {spec!r}: train on the plain base (hf:{parsed.name}); stacking a new LoRA on an adapter is not supported"
        )
    return BaseModel(spec, parsed.name)


def adapter_spec(base_spec: str, adapter_dir: Path | str) -> str:
    """The spec that loads `base_spec` with the adapter: `hf:<base>+lora:<adapter>`."""
    return f"hf:{resolve_base(base_spec).path}+lora:{Path(adapter_dir).expanduser().resolve()}"


def pick_device(device: str, use_4bit: bool) -> str:
    from engine.device import resolve_device

    dev = resolve_device(device)
    if use_4bit and not dev.startswith("cuda"):
        raise ConfigError(f"--4bit (QLoRA) needs a CUDA GPU but training would run on {dev}; drop --4bit or use a CUDA machine")
    if use_4bit:
        try:
            import bitsandbytes  # noqa: F401
        except ImportError as exc:
            raise ConfigError("--4bit needs the bitsandbytes package; pip install bitsandbytes (Linux + CUDA)") from exc
    return dev


def precision_args(device: str) -> dict:
    """TrainingArguments keys for this device (see the module docstring)."""
    if device.startswith("cuda"):
        import torch

        bf16 = torch.cuda.is_bf16_supported()
        return {"bf16": bf16, "fp16": not bf16, "activation_checkpointing": True, "use_cpu": False}
    return {"bf16": False, "fp16": False, "activation_checkpointing": False, "use_cpu": device == "cpu"}


def load_base(base: BaseModel, device: str, use_4bit: bool, trust_remote_code: bool = False):
    """(model, tokenizer) ready for peft: fp32 on CPU, bf16/fp16 on GPU, NF4 with 4-bit."""
    import os

    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    hf_logging.disable_progress_bar()  # "Loading weights" bars would garble the CLI and job logs
    offline = os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}
    kwargs: dict = {"use_safetensors": True, "trust_remote_code": trust_remote_code, "local_files_only": offline}
    if device.startswith("cuda"):
        kwargs["dtype"] = torch.bfloat16 if torch.cuda.is_bf16_supported() else torch.float16
    else:
        kwargs["dtype"] = torch.float32
    if use_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=kwargs["dtype"], bnb_4bit_use_double_quant=True
        )
        kwargs["device_map"] = {"": device if ":" in device else f"{device}:0"}
    try:
        tok = AutoTokenizer.from_pretrained(base.path, trust_remote_code=trust_remote_code, local_files_only=offline)
        model = AutoModelForCausalLM.from_pretrained(base.path, **kwargs)
    except (OSError, ValueError) as exc:
        raise ModelError(f"{base.spec}: cannot load {base.path!r} for training ({str(exc).splitlines()[0][:160]}); "
                         "give a local directory or a model already in the HF cache") from exc
    if not getattr(tok, "chat_template", None):
        raise ModelError(f"{base.spec}: the tokenizer has no chat template; train an instruction-tuned chat model")
    if tok.pad_token_id is None:
        tok.pad_token = tok.eos_token
    if use_4bit:
        from peft import prepare_model_for_kbit_training

        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True)
    return model, tok


def lora_config(r: int, alpha: int | None, dropout: float, target_modules: str):
    from peft import LoraConfig

    targets = target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",") if t.strip()]
    return LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")


def default_lora_r(device: str) -> int:
    """The paper's rank 128 on a GPU; 16 on CPU, where rank 128 only makes training slow."""
    return 128 if device.startswith("cuda") else 16


# -- chat shaping ------------------------------------------------------------------------------
def keeps_system(tokenizer) -> bool:
    probe = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}]
    try:
        return _PROBE in tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception:  # noqa: BLE001 - jinja raise_exception: the template has no system role
        return False


def to_chat(turns, system_ok: bool) -> list[dict]:
    """Turns as chat dicts; a template without a system role gets it merged into the first user turn
    (exactly as the HF backend does at generation time, so training and inference see one prompt)."""
    chat = [{"role": t.role, "content": t.content} for t in turns]
    if system_ok:
        return chat
    system = "\n\n".join(m["content"] for m in chat if m["role"] == "system")
    rest = [m for m in chat if m["role"] != "system"]
    if system:
        if rest and rest[0]["role"] == "user":
            rest[0] = {"role": "user", "content": f"{system}\n\n{rest[0]['content']}"}
        else:
            rest.insert(0, {"role": "user", "content": system})
    return rest


# -- memory ------------------------------------------------------------------------------------
def estimate_bytes(base: BaseModel, *, lora_r: int, use_4bit: bool, max_length: int, batch: int, sequences: int, trust_remote_code: bool = False) -> int:
    """Rough peak GPU memory of LoRA training: frozen weights + LoRA weights/grads/Adam states +
    activations of `sequences` x `batch` sequences of `max_length` tokens (gradient checkpointing on)
    + the fp32 logits + ~1 GiB of CUDA context. Meant to refuse hopeless runs, not to be exact."""
    from accelerate import init_empty_weights
    from transformers import AutoConfig, AutoModelForCausalLM

    cfg = AutoConfig.from_pretrained(base.path, trust_remote_code=trust_remote_code)
    text = getattr(cfg, "text_config", None) or cfg
    with init_empty_weights():
        n_params = AutoModelForCausalLM.from_config(cfg, trust_remote_code=trust_remote_code).num_parameters()
    h, layers = text.hidden_size, text.num_hidden_layers
    inter = getattr(text, "intermediate_size", 4 * h)
    heads = text.num_attention_heads
    kv = getattr(text, "num_key_value_heads", heads) * (getattr(text, "head_dim", None) or h // heads)
    lora_params = layers * lora_r * ((h + h) * 2 + (h + kv) * 2 + 3 * (h + inter))
    weights = n_params * (0.55 if use_4bit else 2)
    lora = lora_params * 16  # fp32 weight + grad + two Adam moments
    tokens = batch * sequences * max_length
    activations = tokens * h * layers * 2 * 2 + tokens * h * 34  # checkpoints per layer + one live layer
    logits = tokens * text.vocab_size * 4 * 2
    return int((weights + lora + activations + logits) * 1.15 + GIB)


def check_memory(device: str, needed: int, what: str) -> None:
    """Refuse before loading when the estimate exceeds the GPU's free memory."""
    if not device.startswith("cuda"):
        return
    import torch

    index = int(device.partition(":")[2] or 0)
    free, _total = torch.cuda.mem_get_info(index)
    if needed > free:
        raise ConfigError(
            f"{what} needs about {needed / GIB:.1f} GiB on {device} but only {free / GIB:.1f} GiB is free; "
            "use --4bit, a smaller --lora-r or max length, a smaller model, or free the GPU"
        )


# -- trainer plumbing --------------------------------------------------------------------------
REPORTED = ("loss", "rewards/margins", "rewards/accuracies", "rewards/chosen", "rewards/rejected",
            "logps/chosen", "logps/rejected", "mean_token_accuracy", "learning_rate", "grad_norm")


def make_callback(progress: Progress | None, stop: threading.Event | None, on_metrics: MetricsCallback | None,
                  on_checkpoint: CheckpointCallback | None):
    """A TrainerCallback: progress per step, metrics per log, checkpoint paths, stop -> save + halt."""
    from transformers import TrainerCallback

    class _Report(TrainerCallback):
        stopped = False

        def on_step_end(self, args, state, control, **kw):
            if progress is not None:
                progress(state.global_step, state.max_steps, f"step {state.global_step}/{state.max_steps}")
            if stop is not None and stop.is_set():
                self.stopped = True
                control.should_save = True  # resume continues from here, not from the last save_steps
                control.should_training_stop = True
            return control

        def on_log(self, args, state, control, logs=None, **kw):
            values = {k: float(v) for k, v in (logs or {}).items() if k in REPORTED and isinstance(v, (int, float))}
            if values and on_metrics is not None:
                on_metrics(state.global_step, values)

        def on_save(self, args, state, control, **kw):
            if on_checkpoint is not None:
                on_checkpoint(str(Path(args.output_dir) / f"checkpoint-{state.global_step}"))

    return _Report()


def check_resume(resume_from: str | None) -> str | None:
    if resume_from is None:
        return None
    if not (Path(resume_from) / "trainer_state.json").is_file():
        raise InputError(f"checkpoint {resume_from} is missing or incomplete (no trainer_state.json); start the training again")
    return str(resume_from)


def last_metrics(log_history: list[dict]) -> dict[str, float]:
    """The latest value of every reported metric, plus the trainer's summary numbers."""
    out: dict[str, float] = {}
    for entry in log_history:
        for k, v in entry.items():
            if (k in REPORTED or k in ("train_loss", "train_runtime", "epoch")) and isinstance(v, (int, float)):
                out[k] = float(v)
    first = next((e["loss"] for e in log_history if "loss" in e), None)
    if first is not None:
        out["first_loss"] = float(first)
    return out


@contextmanager
def quiet_training():
    """No dataset progress bars nor library deprecation noise: they would garble the CLI and job logs."""
    from datasets.utils import logging as ds_logging

    was_enabled = ds_logging.is_progress_bar_enabled()
    ds_logging.disable_progress_bar()
    try:
        with warnings.catch_warnings():  # deprecations raised inside TRL/transformers, not by our calls
            warnings.filterwarnings("ignore", message=r".*is_gradient_checkpointing.*", category=FutureWarning)
            yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def drop_printers(trainer) -> None:
    """Metrics go through our callback; the Trainer's own printing callbacks would spam stdout."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)
