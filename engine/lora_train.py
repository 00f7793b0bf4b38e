"""What LoRA training (DPO and EU/SFT) shares: the settings every run takes, the base model,
device and precision rules, the memory check, the TrainerCallback that reports progress and stops,
and the run itself (`load_for_training` -> rows -> `train_adapter`). Chat messages are shaped by
the HF backend's own `to_chat`, so training and generation see one prompt.

Precision rules: CPU trains in fp32 with bf16/fp16 and gradient checkpointing off; a CUDA GPU in
bf16 (fp16 where bf16 is missing) with gradient checkpointing; 4-bit (QLoRA) only on CUDA.
"""

from __future__ import annotations

import logging
import shutil
import threading
import warnings
from collections.abc import Callable
from contextlib import contextmanager
from dataclasses import asdict, dataclass, field, fields
from pathlib import Path
from typing import Any, ClassVar, Self, TypedDict, Unpack

from engine.backends.hf import causal_lm_kwargs, hub_offline, keeps_system
from engine.checks import Bounds, number
from engine.errors import Cancelled, ConfigError, InputError, ModelError
from engine.model_card import TrainingData, base_reference, lineage, trainer_config, write_model_card

Progress = Callable[[int, int, str], None]
MetricsCallback = Callable[[int, dict[str, float]], None]
CheckpointCallback = Callable[[str], None]

GIB = 1024**3


class TrainHooks(TypedDict, total=False):
    """How a caller (a job) follows and steers a run; every key is optional."""

    progress: Progress | None  # (step, max_steps, text) per optimizer step
    stop: threading.Event | None  # set -> save a checkpoint, raise Cancelled
    resume_from: str | None  # a checkpoint directory from on_checkpoint
    on_metrics: MetricsCallback | None  # (step, {name: value}) per log
    on_checkpoint: CheckpointCallback | None  # the path of each saved checkpoint


def setting(default, help: str):
    """A settings field with its one-line help (what the CLI flags and the TUI form show)."""
    return field(default=default, metadata={"help": help})


@dataclass(frozen=True)
class LoraSettings:
    """What every LoRA run takes; DpoSettings and EuSettings re-declare a field to give it their own
    default or help, and add their own. One help line per field."""

    kind: ClassVar[str] = "LoRA"  # names the run in messages ("DPO setting", "EU training stopped")
    # the range of every numeric field, checked on construction (CLI flags, the TUI form, a job's
    # stored config all build this class): a refused value never reaches a worker
    BOUNDS: ClassVar[dict[str, Bounds]] = {
        "epochs": Bounds(float, 0, 1000, lo_open=True, example="3"),
        "learning_rate": Bounds(float, 0, 1, lo_open=True, example="2e-4"),
        "lora_r": Bounds(int, 1, 4096, none_ok=True, example="16 (CPU) or 128 (GPU)"),
        "lora_alpha": Bounds(int, 1, 65536, none_ok=True, example="2 x rank"),
        "lora_dropout": Bounds(float, 0, 1, example="0.05"),
        "batch_size": Bounds(int, 1, 4096, example="1"),
        "grad_accum": Bounds(int, 1, 4096, example="8"),
        "max_length": Bounds(int, 8, 1_000_000, example="1024"),
        "max_steps": Bounds(int, 1, 10_000_000, special=(-1,), example="-1 (all epochs) or 100"),
        "save_steps": Bounds(int, 1, 10_000_000, example="50"),
        "seed": Bounds(int, 0, 2**32 - 1, example="42"),
    }

    epochs: float = setting(3.0, "passes over the training data")
    learning_rate: float = setting(2e-4, "AdamW learning rate")
    lora_r: int | None = setting(None, "LoRA rank; empty = 128 on a GPU, 16 on CPU")
    lora_alpha: int | None = setting(None, "LoRA alpha; empty = 2 x rank")
    lora_dropout: float = setting(0.05, "dropout on the LoRA branch")
    target_modules: str = setting("all-linear", "modules that get LoRA: all-linear or a comma list")
    batch_size: int = setting(1, "examples per device step")
    grad_accum: int = setting(8, "gradient accumulation steps")
    max_length: int = setting(1024, "max tokens per example")
    max_steps: int = setting(-1, "stop after this many optimizer steps; -1 = run all epochs")
    save_steps: int = setting(50, "save a resumable checkpoint every N optimizer steps")
    seed: int = setting(42, "random seed")
    use_4bit: bool = setting(False, "QLoRA: load the base in 4-bit NF4 (CUDA + bitsandbytes only)")
    device: str = setting("auto", "auto | cpu | cuda | cuda:N")

    def __post_init__(self) -> None:
        for name, bounds in self.BOUNDS.items():
            object.__setattr__(self, name, number(f"{self.kind} setting {name}", getattr(self, name), bounds))
        for name in ("use_4bit", "weighted"):
            if hasattr(self, name) and not isinstance(getattr(self, name), bool):
                raise InputError(f"{self.kind} setting {name} {getattr(self, name)!r}: must be true or false; drop it or pass true")
        if not isinstance(self.target_modules, str) or not self.target_modules.strip():
            raise InputError(f"{self.kind} setting target_modules {self.target_modules!r}: must name modules; e.g. all-linear")
        if not isinstance(self.device, str):
            raise InputError(f"{self.kind} setting device {self.device!r}: must be text; use auto, cpu, cuda, cuda:N or mps")

    def to_dict(self) -> dict:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict) -> Self:
        known = {f.name for f in fields(cls)}
        unknown = set(data) - known
        if unknown:
            raise ConfigError(f"{cls.kind} setting {sorted(unknown)[0]!r} is not known; known: {', '.join(sorted(known))}")
        return cls(**data)


def settings_help(cls: type[LoraSettings]) -> dict[str, str]:
    """name -> one-line help: what the CLI flags and the TUI form show."""
    return {f.name: f.metadata.get("help", "") for f in fields(cls)}


@dataclass(frozen=True)
class TrainResult:
    adapter_dir: str
    metrics: dict
    steps: int
    lineage: dict = field(default_factory=dict)  # engine.model_card.lineage + world_size, strategy, backend, rank_devices


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
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer
    from transformers.utils import logging as hf_logging

    from engine.device import torch_dtype

    hf_logging.disable_progress_bar()  # "Loading weights" bars would garble the CLI and job logs
    dtype = torch_dtype(device) if device.startswith("cuda") else torch.float32
    kwargs = causal_lm_kwargs(dtype, device, load_in_4bit=use_4bit, trust_remote_code=trust_remote_code, fsdp=under_fsdp())
    try:
        tok = AutoTokenizer.from_pretrained(base.path, trust_remote_code=trust_remote_code, local_files_only=hub_offline())
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

        # non-reentrant activation checkpointing: the kind DDP/FSDP ranks can run (a reentrant one
        # re-marks LoRA gradients ready inside DDP's hooks)
        model = prepare_model_for_kbit_training(model, use_gradient_checkpointing=True,
                                                gradient_checkpointing_kwargs={"use_reentrant": False})
    return model, tok


def under_fsdp() -> bool:
    """Is this process a rank of an FSDP launch (accelerate sets ACCELERATE_USE_FSDP)?"""
    import os

    return os.environ.get("ACCELERATE_USE_FSDP", "").lower() == "true"


def lora_config(r: int, alpha: int | None, dropout: float, target_modules: str):
    from peft import LoraConfig

    targets = target_modules if target_modules == "all-linear" else [t.strip() for t in target_modules.split(",") if t.strip()]
    return LoraConfig(r=r, lora_alpha=alpha or 2 * r, lora_dropout=dropout, target_modules=targets, task_type="CAUSAL_LM")


def default_lora_r(device: str) -> int:
    """The paper's rank 128 on a GPU; 16 on CPU, where rank 128 only makes training slow."""
    return 128 if device.startswith("cuda") else 16


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
            if stop is not None and _stop_agreed(stop):
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


def _stop_agreed(stop: threading.Event) -> bool:
    """Whether to stop now; with several ranks every rank must answer alike at the same step."""
    if _world_size() == 1:
        return stop.is_set()
    from engine.distributed import agree_any

    return agree_any(stop.is_set())


def _world_size() -> int:
    import os

    return int(os.environ.get("WORLD_SIZE", "1"))


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
        with warnings.catch_warnings():  # deprecations raised inside TRL/transformers/bitsandbytes, not by our calls
            warnings.filterwarnings("ignore", category=FutureWarning)
            warnings.filterwarnings("ignore", message=r".*kernels.*")
            warnings.filterwarnings("ignore", module="bitsandbytes")
            logging.getLogger("bitsandbytes").setLevel(logging.ERROR)  # CUDA-library and "kernels" notices
            yield
    finally:
        if was_enabled:
            ds_logging.enable_progress_bar()


def drop_printers(trainer) -> None:
    """Metrics go through our callback; the Trainer's own printing callbacks would spam stdout."""
    from transformers.trainer_callback import PrinterCallback, ProgressCallback

    trainer.remove_callback(PrinterCallback)
    trainer.remove_callback(ProgressCallback)


# -- the run -----------------------------------------------------------------------------------
@dataclass(frozen=True)
class Loaded:
    """A base model loaded for LoRA training, with what the run decided about it."""

    model: Any
    tokenizer: Any
    device: str
    lora_r: int
    system_ok: bool  # the chat template keeps a system message (else to_chat merges it)
    base: BaseModel | None = None


def load_for_training(base_spec: str, config: LoraSettings, *, sequences: int) -> Loaded:
    """Resolve the base, pick the device and rank, refuse a run the GPU cannot hold, load the model.
    `sequences`: sequences per example (2 for a DPO pair, 1 for a dialogue), for the memory estimate."""
    base = resolve_base(base_spec)
    device = pick_device(config.device, config.use_4bit)
    r = config.lora_r or default_lora_r(device)
    if device.startswith("cuda"):
        need = estimate_bytes(base, lora_r=r, use_4bit=config.use_4bit, max_length=config.max_length, batch=config.batch_size,
                              sequences=sequences)  # fmt: skip
        check_memory(device, need, f"{config.kind} training")
    model, tok = load_base(base, device, config.use_4bit)
    return Loaded(model, tok, device, r, keeps_system(tok, base.spec), base)


def trainer_args(config: LoraSettings, out: Path, device: str) -> dict:
    """The TRL config keys (DPOConfig, SFTConfig) every run sets alike: checkpoints in
    `out/checkpoints`, a log line per step, no reporting integrations, no tqdm."""
    return dict(
        output_dir=str(out / "checkpoints"),
        per_device_train_batch_size=config.batch_size,
        gradient_accumulation_steps=config.grad_accum,
        num_train_epochs=config.epochs,
        max_steps=config.max_steps,
        learning_rate=config.learning_rate,
        max_length=config.max_length,
        seed=config.seed,
        logging_steps=1,
        save_strategy="steps",
        save_steps=config.save_steps,
        save_total_limit=2,
        report_to=[],
        disable_tqdm=True,
        dataloader_num_workers=0,
        **precision_args(device),
        **distributed_args(device),
    )


def distributed_args(device: str) -> dict:
    """Under `accelerate launch` with several ranks: gloo between CPU ranks, nccl between GPUs;
    LoRA uses every trainable parameter, so DDP need not search for unused ones."""
    if _world_size() == 1:
        return {}
    out = {"ddp_backend": "nccl" if device.startswith("cuda") else "gloo", "ddp_find_unused_parameters": False}
    if device.startswith("cuda"):  # see load_base: non-reentrant checkpointing under DDP/FSDP
        out["activation_checkpointing_kwargs"] = {"use_reentrant": False}
    return out


def train_adapter(
    make_trainer: Callable[..., Any],
    args,
    rows: list[dict],
    loaded: Loaded,
    config: LoraSettings,
    out: Path,
    *,
    too_long: str,
    counts: Callable[[int], dict],
    data: TrainingData | None = None,
    **hooks: Unpack[TrainHooks],
) -> TrainResult:
    """Train a fresh LoRA adapter on `rows` with a TRL trainer and save it to `out/adapter`.

    `too_long`: the InputError when max_length leaves no row; `counts(kept rows)`: the data counts
    added to the metrics; `data`: what the rows are (count, sha256), for the lineage and the model card
    (README.md) written beside the adapter. Raises Cancelled when `stop` is set (after saving a
    checkpoint to resume from)."""
    from datasets import Dataset

    callback = make_callback(hooks.get("progress"), hooks.get("stop"), hooks.get("on_metrics"), hooks.get("on_checkpoint"))
    with quiet_training():
        trainer = make_trainer(
            model=loaded.model,
            args=args,
            train_dataset=Dataset.from_list(rows),
            processing_class=loaded.tokenizer,
            peft_config=lora_config(loaded.lora_r, config.lora_alpha, config.lora_dropout, config.target_modules),
            callbacks=[callback],
        )
        drop_printers(trainer)
        kept = len(trainer.train_dataset)
        if kept == 0:
            raise InputError(too_long)
        trainer.train(resume_from_checkpoint=check_resume(hooks.get("resume_from")))
    steps = trainer.state.global_step
    if callback.stopped:
        raise Cancelled(f"{config.kind} training stopped at step {steps}; a checkpoint was saved to resume from")
    adapter_dir = out / "adapter"
    trainer.save_model(str(adapter_dir))  # rank 0 only under several ranks (the Trainer's should_save)
    main = trainer.is_world_process_zero()
    if main:
        loaded.tokenizer.save_pretrained(str(adapter_dir))
    metrics = last_metrics(trainer.state.log_history)
    metrics.update(steps=steps, **counts(kept), lora_r=loaded.lora_r, device=loaded.device)
    info = _lineage(args, loaded, config, out, adapter_dir, metrics, data or TrainingData("examples", len(rows), ""))
    info.update(world_size=1, strategy="single", backend=None, rank_devices=[loaded.device])  # several ranks: engine.dist_worker
    trainer.accelerator.wait_for_everyone()  # no rank still reads a checkpoint when rank 0 removes them
    if main:
        write_model_card(adapter_dir, out.name, info)
        shutil.rmtree(out / "checkpoints", ignore_errors=True)  # the adapter is saved; optimizer states are large
    return TrainResult(str(adapter_dir), metrics, steps, info)


def resolved_settings(config: LoraSettings, loaded: Loaded, args) -> dict:
    """Our settings as the run used them: defaults filled in (rank, alpha, device, precision)."""
    out = config.to_dict()
    out.update(lora_r=loaded.lora_r, lora_alpha=config.lora_alpha or 2 * loaded.lora_r, device=loaded.device,
               bf16=bool(getattr(args, "bf16", False)), fp16=bool(getattr(args, "fp16", False)),
               activation_checkpointing=bool(getattr(args, "activation_checkpointing", False)))  # fmt: skip
    return out


def _lineage(args, loaded: Loaded, config: LoraSettings, out: Path, adapter_dir: Path, metrics: dict, data: TrainingData) -> dict:
    base = loaded.base or BaseModel("", str(getattr(loaded.model, "name_or_path", "")))
    return lineage(
        kind="dpo" if config.kind == "DPO" else "eu" if config.kind == "EU" else config.kind.lower(),
        base=base_reference(base.spec, base.path, adapter_dir),
        data=data,
        hyperparameters=resolved_settings(config, loaded, args),
        trainer=trainer_config(args, out),
        metrics=metrics,
    )
