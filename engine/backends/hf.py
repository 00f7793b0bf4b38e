"""HF transformers backend: `hf:ID_OR_PATH` and `hf:ID_OR_PATH+lora:ADAPTER`.

Uses the tokenizer's own chat template (or an explicit `template=`); templates without a system
role (Gemma) get the system text merged into the first user turn. n samples come from ONE
generate call (`num_return_sequences`). Safetensors only; remote code only when opted in.
"""

from __future__ import annotations

import os
import threading
from collections.abc import Iterator, Sequence
from pathlib import Path

from engine.device import resolve_device
from engine.errors import ConfigError, InputError, ModelError
from engine.types import GenerationParams, Turn

from .base import BaseChatModel, Completion, check_messages

_PROBE = "APC-SYSTEM-PROBE-7f3a"  # a sentinel: does the template keep a system message?


# -- what loading for generation and for LoRA training (engine.lora_train) share -------------------
def hub_offline() -> bool:
    # read the env each time: huggingface_hub freezes its own flag at import time
    return os.environ.get("HF_HUB_OFFLINE", "").lower() in {"1", "true", "yes", "on"}


def causal_lm_kwargs(dtype, device: str, *, load_in_4bit: bool, trust_remote_code: bool, fsdp: bool = False) -> dict:
    """`AutoModelForCausalLM.from_pretrained` keys: safetensors only, no download when offline,
    NF4 (QLoRA-style) weights placed on `device` with 4-bit. `fsdp`: the 4-bit weights are stored
    in `dtype` (so FSDP can flatten and shard them with the rest) and FSDP places them."""
    kwargs: dict = {
        "dtype": dtype,
        "use_safetensors": True,
        "trust_remote_code": trust_remote_code,
        "local_files_only": hub_offline(),
    }
    if load_in_4bit:
        from transformers import BitsAndBytesConfig

        kwargs["quantization_config"] = BitsAndBytesConfig(
            load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype, bnb_4bit_use_double_quant=True,
            **({"bnb_4bit_quant_storage": dtype} if fsdp else {}),
        )
        if not fsdp:
            kwargs["device_map"] = {"": device if ":" in device else f"{device}:0"}
    return kwargs


def keeps_system(tokenizer, spec: str) -> bool:
    """Render a probe system message: an error about the role or a dropped probe means no system role."""
    probe = [{"role": "system", "content": _PROBE}, {"role": "user", "content": "hi"}]
    try:
        text = tokenizer.apply_chat_template(probe, tokenize=False, add_generation_prompt=True)
    except Exception as exc:  # noqa: BLE001 - jinja raise_exception raises TemplateError; any failure means "no system role"
        if "system" not in str(exc).lower() and "role" not in str(exc).lower():
            raise ModelError(f"{spec}: the chat template fails to render: {str(exc)[:200]}") from exc
        return False
    return _PROBE in text


def to_chat(turns: Sequence[Turn], system_ok: bool) -> list[dict]:
    """Turns as chat dicts; a template without a system role gets the system text merged into the
    first user turn. Generation and LoRA training both shape prompts here, so they see one prompt."""
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


class HFChatModel(BaseChatModel):
    def __init__(
        self,
        spec: str,
        name_or_path: str,
        *,
        adapter: str | None = None,
        device: str = "auto",
        dtype: str | None = None,
        load_in_4bit: bool = False,
        template: str | None = None,
        trust_remote_code: bool = False,
        meaningless: bool = False,
        suppress_special: bool = False,
    ):
        self.spec = spec
        self.meaningless = meaningless
        self.name_or_path = name_or_path
        self.adapter = adapter
        self.device = resolve_device(device)
        if load_in_4bit and not self.device.startswith("cuda"):
            raise ConfigError(
                f"{spec}: 4-bit loading (bitsandbytes NF4) needs a CUDA GPU, but the device is {self.device}; "
                "drop load_in_4bit or run on a CUDA machine"
            )
        self._lock = threading.Lock()  # one generate at a time per model (torch seeds are global)
        self.tokenizer = self._load_tokenizer(trust_remote_code)
        if template:
            self.tokenizer.chat_template = template
        if not getattr(self.tokenizer, "chat_template", None):
            raise ModelError(
                f"{spec}: the tokenizer has no chat template; use an instruction-tuned chat model "
                "or pass an explicit template (--template JINJA)"
            )
        if self.tokenizer.pad_token_id is None:
            self.tokenizer.pad_token = self.tokenizer.eos_token
        self.supports_system = keeps_system(self.tokenizer, spec)
        self.model = self._load_model(dtype, load_in_4bit, trust_remote_code)
        # the random tiny model would often emit control tokens only, i.e. an empty reply
        self._suppress = list(self.tokenizer.all_special_ids) if suppress_special else None

    # -- loading -----------------------------------------------------------------------
    def _local(self) -> bool:
        return Path(self.name_or_path).expanduser().exists()

    def _load_error(self, what: str, exc: Exception) -> ModelError:
        if not self._local():
            hint = "this machine is offline (HF_HUB_OFFLINE=1)" if hub_offline() else type(exc).__name__
            return ModelError(
                f"{self.spec}: cannot load {what} for {self.name_or_path!r} ({hint}); it needs a download "
                f"(`apc models pull {self.spec}` or `hf download ID` on a machine with network) or a local path: hf:/path/to/model"
            )
        return ModelError(f"{self.spec}: cannot load {what} from {self.name_or_path}: {str(exc).splitlines()[0][:200]}")

    def _load_tokenizer(self, trust_remote_code: bool):
        from transformers import AutoTokenizer
        from transformers.utils import logging as hf_logging

        hf_logging.disable_progress_bar()  # progress bars would corrupt the CLI's JSON/TUI output

        try:
            return AutoTokenizer.from_pretrained(
                self.name_or_path, trust_remote_code=trust_remote_code, local_files_only=hub_offline()
            )
        except (OSError, ValueError) as exc:
            raise self._load_error("the tokenizer", exc) from exc

    def _torch_dtype(self, dtype: str | None):
        import torch

        from engine.device import torch_dtype

        if not dtype:
            return torch_dtype(self.device)
        if dtype not in {"float32", "float16", "bfloat16"}:
            raise ConfigError(f"dtype {dtype!r}: use float32, float16 or bfloat16")
        return getattr(torch, dtype)

    def _load_model(self, dtype: str | None, load_in_4bit: bool, trust_remote_code: bool):
        from transformers import AutoModelForCausalLM

        kwargs = causal_lm_kwargs(
            self._torch_dtype(dtype), self.device, load_in_4bit=load_in_4bit, trust_remote_code=trust_remote_code
        )
        try:
            model = AutoModelForCausalLM.from_pretrained(self.name_or_path, **kwargs)
        except ImportError as exc:
            raise ConfigError(f"{self.spec}: {str(exc).splitlines()[0][:200]}; install the missing package") from exc
        except (OSError, ValueError) as exc:
            raise self._load_error("the model weights (safetensors)", exc) from exc
        if not load_in_4bit:
            model.to(self.device)
        if self.adapter:
            model = self._attach_adapter(model)
        model.eval()
        return model

    def _attach_adapter(self, model):
        from peft import PeftModel

        path = Path(self.adapter).expanduser()
        if not (path / "adapter_config.json").exists():
            raise InputError(f"{self.spec}: no LoRA adapter at {path} (adapter_config.json missing); check the +lora: path")
        try:
            return PeftModel.from_pretrained(model, str(path), is_trainable=False)
        except (OSError, ValueError, RuntimeError) as exc:
            raise ModelError(f"{self.spec}: adapter {path} does not fit the base model: {str(exc).splitlines()[0][:200]}") from exc

    # -- prompts -----------------------------------------------------------------------
    def to_chat(self, messages: Sequence[Turn]) -> list[dict]:
        check_messages(messages)
        return to_chat(messages, self.supports_system)

    def render(self, messages: Sequence[Turn]) -> str:
        """The exact prompt text the model sees (after any system merge)."""
        try:
            return self.tokenizer.apply_chat_template(self.to_chat(messages), tokenize=False, add_generation_prompt=True)
        except Exception as exc:  # noqa: BLE001 - jinja errors carry the template's own message
            raise InputError(f"{self.spec}: the chat template rejects these messages: {str(exc)[:200]}") from exc

    def _encode(self, messages: Sequence[Turn]):
        enc = self.tokenizer(self.render(messages), return_tensors="pt", add_special_tokens=False)
        return {k: v.to(self.model.device) for k, v in enc.items()}

    def _gen_kwargs(self, params: GenerationParams, n: int) -> dict:
        kw: dict = {
            "max_new_tokens": params.max_new_tokens,
            "pad_token_id": self.tokenizer.pad_token_id,
        }
        if self._suppress:
            kw["suppress_tokens"] = self._suppress
        if params.temperature and params.temperature > 0:
            kw.update(do_sample=True, temperature=params.temperature, top_p=params.top_p, num_return_sequences=n)
        else:
            kw.update(do_sample=False, temperature=None, top_p=None, top_k=None)
        return kw

    # -- generation --------------------------------------------------------------------
    def complete(self, messages: Sequence[Turn], n: int = 1, params: GenerationParams = GenerationParams()) -> Completion:
        import torch

        if n < 1:
            raise InputError(f"n={n}: ask for at least one reply")
        inputs = self._encode(messages)
        prompt_len = inputs["input_ids"].shape[1]
        greedy = not (params.temperature and params.temperature > 0)
        with self._lock, torch.inference_mode():
            if params.seed is not None:
                torch.manual_seed(params.seed)
            out = self.model.generate(**inputs, **self._gen_kwargs(params, n))
        new = out[:, prompt_len:]
        texts = [t.strip() for t in self.tokenizer.batch_decode(new, skip_special_tokens=True)]
        if greedy:  # greedy decoding cannot return n different sequences; every sample is the same
            texts = texts[:1] * n
        completion_tokens = int((new != self.tokenizer.pad_token_id).sum())
        return Completion(texts, prompt_tokens=prompt_len, completion_tokens=completion_tokens)

    def stream(self, messages: Sequence[Turn], params: GenerationParams = GenerationParams()) -> Iterator[str]:
        import torch
        from transformers import StoppingCriteria, StoppingCriteriaList, TextIteratorStreamer

        inputs = self._encode(messages)
        streamer = TextIteratorStreamer(self.tokenizer, skip_prompt=True, skip_special_tokens=True, timeout=600)
        failure: list[BaseException] = []
        abandoned = threading.Event()  # the consumer stopped iterating: stop generating too

        class _Abandoned(StoppingCriteria):
            def __call__(self, input_ids, scores, **kwargs):
                return abandoned.is_set()

        def run() -> None:
            try:
                with self._lock, torch.inference_mode():
                    if params.seed is not None:
                        torch.manual_seed(params.seed)
                    self.model.generate(
                        **inputs, **self._gen_kwargs(params, 1), streamer=streamer,
                        stopping_criteria=StoppingCriteriaList([_Abandoned()]),
                    )  # fmt: skip
            except BaseException as exc:  # noqa: BLE001 - re-raised in the caller's thread below
                failure.append(exc)
                streamer.end()

        thread = threading.Thread(target=run, name="hf-stream", daemon=True)
        thread.start()
        try:
            for delta in streamer:
                if delta:
                    yield delta
        finally:
            abandoned.set()
            thread.join()
        if failure:
            raise ModelError(f"{self.spec}: generation failed: {str(failure[0])[:200]}") from failure[0]

    def label_logprobs(self, messages: Sequence[Turn], labels: list[str]) -> list[float] | None:
        """Sum of log-probs of each label's tokens right after the generation prompt (one batch)."""
        import torch

        prompt_ids = self._encode(messages)["input_ids"][0].tolist()
        label_ids = [self.tokenizer(lab, add_special_tokens=False)["input_ids"] for lab in labels]
        if any(not ids for ids in label_ids):
            raise InputError(f"{self.spec}: a label tokenizes to nothing: {labels!r}")
        seqs = [prompt_ids + ids for ids in label_ids]
        width = max(len(s) for s in seqs)
        pad = self.tokenizer.pad_token_id
        input_ids = torch.tensor([s + [pad] * (width - len(s)) for s in seqs], device=self.model.device)
        mask = torch.tensor([[1] * len(s) + [0] * (width - len(s)) for s in seqs], device=self.model.device)
        with self._lock, torch.inference_mode():
            logits = self.model(input_ids=input_ids, attention_mask=mask).logits.float()
        logp = torch.log_softmax(logits, dim=-1)
        out = []
        for row, ids in enumerate(label_ids):
            start = len(prompt_ids)
            out.append(float(sum(logp[row, start + j - 1, tok] for j, tok in enumerate(ids))))
        return out

    def close(self) -> None:
        self.model = None
