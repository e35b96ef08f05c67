"""The one training loop, for every stage and baseline.

Why a readable accelerate loop rather than `transformers.Trainer`: a stage here is only a freeze policy
plus hyper-parameters (`lingualift.train.stages`), and what we save differs per stage (stage 1: the alignment
layer and references to the frozen parts; stage 2: the full model or a LoRA adapter). Step checkpoints
hold only the trainable tensors, the optimizer, the scheduler and the RNG state, so resuming a 7B
stage-1 run never re-writes the frozen LLM, and a resumed run ends bitwise equal to an uninterrupted one
(the data order is a pure function of seed, epoch and step). `accelerate launch` / `torchrun` give
multi-process data parallelism; FSDP and DeepSpeed ZeRO-3 configs ship in `configs/accelerate/`
(under those, step checkpoints use `accelerator.save_state`, which knows how to gather shards). What differs
between a LinguaLIFT model and the `sft` baseline's plain LLM lives in `lingualift.train.targets`.
"""

from __future__ import annotations

import contextlib
import json
import logging
import math
import os
import time
from pathlib import Path

import torch
import yaml
from accelerate import Accelerator
from accelerate.state import AcceleratorState
from accelerate.utils import DistributedType, set_seed
from tqdm.auto import tqdm
from transformers import get_scheduler

from lingualift import checkpoint
from lingualift.checkpoint import LOG_FILE, replace_directory
from lingualift.train.config import REMOVED_OPTIONS, TrainConfig, check_files
from lingualift.data.collate import Batch
from lingualift.data.instructions import read_instructions
from lingualift.errors import LinguaLiftError
from lingualift.io import atomic_write
from lingualift.train.objectives import Objective, ObjectiveSchedule
from lingualift.train.stages import apply_freeze_policy, policy_for
from lingualift.train.targets import training_target
from lingualift.model.warmstart import lexical_warm_start

logger = logging.getLogger(__name__)

# Settings that do not change what a resumed run computes; everything else must match the checkpoint.
_RESUME_FREE = ("output_dir", "resume_from_checkpoint", "resume_override", "save_every", "save_total_limit",
                "log_every", "tensorboard")
WEIGHT_GROWTH_WARNING = 100.0  # warn once when the trainable weights' norm grows beyond this factor


def resume_identity(config: TrainConfig, stage: str) -> dict:
    """What a step checkpoint must agree on to be resumed: method, stage, model, data and hyper-parameters."""
    settings = config.to_dict()
    training = {k: v for k, v in settings["training"].items() if k not in _RESUME_FREE}
    return {"method": config.method, "stage": stage, "model": settings["model"], "data": settings["data"],
            "training": training}


def _without_removed_options(saved: dict) -> dict:
    return {section: {key: value for key, value in values.items()
                      if not ((section, key) in REMOVED_OPTIONS and value == REMOVED_OPTIONS[section, key][0])}
            if isinstance(values, dict) else values
            for section, values in saved.items()}


def _with_added_options(saved: dict, defaults: dict) -> dict:
    """A saved identity from before an option existed: the option counts as its declared default, so the
    checkpoint resumes when the run leaves it at that default (the behaviour the checkpoint was trained with)."""
    filled = dict(saved)
    for key, default in defaults.items():
        if key not in saved:
            filled[key] = default
        elif isinstance(saved[key], dict) and isinstance(default, dict):
            filled[key] = _with_added_options(saved[key], default)
    return filled


def _differences(old, new, prefix: str = "") -> list[str]:
    if isinstance(old, dict) and isinstance(new, dict):
        keys = sorted(set(old) | set(new), key=str)
        return [d for k in keys for d in _differences(old.get(k), new.get(k), f"{prefix}{k}.")]
    return [] if old == new else [f"{prefix[:-1]} ({old!r} in the checkpoint, {new!r} now)"]


def _logged_step(line: str) -> int | None:
    """The step of one loss-log line; None for a line a killed run cut short (dropped on resume)."""
    try:
        record = json.loads(line)
    except (ValueError, RecursionError):
        return None
    step = record.get("step", 0) if isinstance(record, dict) else None
    return step if isinstance(step, int) else None


class EpochBatches:
    """Deterministic micro-batches for one process: batch `k` depends only on (seed, k, rank).

    Each epoch is a fresh permutation; it is cut into global batches of `batch_size * world_size`
    examples and each rank takes its slice, so every rank sees the same number of batches.
    """

    def __init__(self, num_examples: int, batch_size: int, seed: int, rank: int = 0, world_size: int = 1):
        self.num_examples, self.batch_size, self.seed = num_examples, batch_size, seed
        self.rank, self.world_size = rank, world_size
        self.global_batch = batch_size * world_size
        self.batches_per_epoch = max(1, num_examples // self.global_batch)

    def indices(self, micro_batch: int) -> list[int]:
        epoch, position = divmod(micro_batch, self.batches_per_epoch)
        generator = torch.Generator().manual_seed(self.seed * 100_003 + epoch)
        order = torch.randperm(self.num_examples, generator=generator)
        if self.num_examples < self.global_batch:  # tiny data: wrap around to fill one global batch
            order = order.repeat(math.ceil(self.global_batch / self.num_examples))
        start = position * self.global_batch + self.rank * self.batch_size
        return order[start : start + self.batch_size].tolist()


def load_training_records(config: TrainConfig) -> list[dict]:
    """The training rows, code-switched on the fly when `data.codeswitch` asks (the objectives build examples)."""
    records = read_instructions(config.data.train, limit=config.data.max_examples)
    if config.data.codeswitch:
        from lingualift.data.codeswitch import CodeSwitchSettings, codeswitch_records

        settings = CodeSwitchSettings.from_dict(config.data.codeswitch, f"{config.source}: data.codeswitch")
        records = codeswitch_records(records, settings, data_dir=config.data_dir)
    return list(records)


def _lora_config(config: TrainConfig):
    from peft import LoraConfig

    lora = config.training.lora
    return LoraConfig(r=lora.r, lora_alpha=lora.alpha, lora_dropout=lora.dropout,
                      target_modules=lora.target_modules, task_type="CAUSAL_LM")


def _optimizer(model, groups: dict, config: TrainConfig, policy) -> torch.optim.Optimizer:
    """AdamW with one parameter group per (model group, decay / no decay); per-group learning rates."""
    training = config.training
    base_lr = training.learning_rate if training.learning_rate is not None else policy.learning_rate
    weight_decay = training.weight_decay if training.weight_decay is not None else policy.weight_decay
    unknown = set(training.lr_groups) - set(groups)
    if unknown:
        raise LinguaLiftError(f"{config.source}: training.lr_groups: unknown group(s) {sorted(unknown)}")
    param_groups, seen = [], set()
    for name, module in groups.items():
        lr = float(training.lr_groups.get(name, base_lr))
        decay = [p for p in module.parameters() if p.requires_grad and p.ndim >= 2 and id(p) not in seen]
        no_decay = [p for p in module.parameters() if p.requires_grad and p.ndim < 2 and id(p) not in seen]
        seen.update(id(p) for p in decay + no_decay)
        param_groups += [{"params": decay, "lr": lr, "weight_decay": weight_decay, "name": f"{name}"},
                         {"params": no_decay, "lr": lr, "weight_decay": 0.0, "name": f"{name}/no_decay"}]
    param_groups = [group for group in param_groups if group["params"]]
    if not param_groups:
        raise LinguaLiftError(f"{config.source}: nothing to train (every parameter is frozen)")
    fused = all(p.device.type in ("cpu", "cuda") for g in param_groups for p in g["params"])
    return torch.optim.AdamW(param_groups, betas=(0.9, 0.999), fused=fused)


def _trainable_names(model) -> list[str]:
    return [name for name, parameter in model.named_parameters() if parameter.requires_grad]


def broadcast_object(value, accelerator):
    """`value` of the main process on every process (a no-op in a single process)."""
    if accelerator.num_processes == 1:
        return value
    from accelerate.utils import broadcast_object_list

    return broadcast_object_list([value])[0]


class Trainer:
    """Runs one config: build, freeze, optimise, log, checkpoint, save."""

    def __init__(self, config: TrainConfig):
        check_files(config)
        self.config = config
        self.stage, self.policy = policy_for(config.method, config.stage, config.source)
        training = config.training
        self.output_dir = Path(training.output_dir)
        # One process may run several stages (the pipeline, tests) with different precisions; accelerate
        # keeps its mixed-precision setting in a process-wide singleton, so start it afresh per run.
        AcceleratorState._reset_state(reset_partial_state=False)
        self.accelerator = Accelerator(
            mixed_precision="bf16" if training.precision == "bf16" else "no",
            cpu=not torch.cuda.is_available(),
        )
        expected = int(os.environ.get("WORLD_SIZE", "1"))
        if self.accelerator.num_processes != expected:
            raise LinguaLiftError(
                f"accelerate started {self.accelerator.num_processes} process(es) but WORLD_SIZE={expected}; "
                "on CPU use `torchrun --nproc_per_node N -m lingualift train …`"
            )
        set_seed(training.seed)
        self.target, model = training_target(config, self.stage, self.policy)
        groups = self.target.parameter_groups(model)
        trainable_groups = tuple(config.model.trainable or self.policy.trainable)
        apply_freeze_policy(groups, trainable_groups)
        if config.model.warm_start and "alignment" not in trainable_groups:
            raise LinguaLiftError(f"{config.source}: model.warm_start needs a stage that trains the alignment layer")
        if training.objective != "lm" and "alignment" not in trainable_groups:
            raise LinguaLiftError(f"{config.source}: training.objective {training.objective} needs a stage that "
                                  "trains the alignment layer")
        # Where training continues from, resolved once: `latest` names the newest step checkpoint, if any.
        self.earlier_checkpoint = checkpoint.latest_step_checkpoint(self.output_dir)
        location = training.resume_from_checkpoint
        self.resume_from = self.earlier_checkpoint if location == "latest" else Path(location) if location else None
        if config.model.warm_start and self.resume_from is None:  # a step checkpoint replaces the fit's weights
            records = read_instructions(config.data.train, limit=config.model.warm_start_texts)
            english = [record.get("source_question", record["question"]) for record in records]
            lexical_warm_start(model, english, seed=training.seed)
        if training.tuning == "lora":
            if "llm" not in trainable_groups:
                raise LinguaLiftError(f"{config.source}: training.tuning lora needs the llm to be trainable")
            model = self.target.add_lora(model, _lora_config(config))
            groups = self.target.parameter_groups(model)
        if training.gradient_checkpointing:
            self.target.llm(model).gradient_checkpointing_enable(gradient_checkpointing_kwargs={"use_reentrant": False})
        self.schedule = ObjectiveSchedule(config, self.target, model, load_training_records(config),
                                          self.accelerator.num_processes)
        self.batches = {name: EpochBatches(len(objective.examples), objective.batch_size, training.seed,
                                           self.accelerator.process_index, self.accelerator.num_processes)
                        for name, objective in self.schedule.objectives.items()}
        primary = self.batches[self.schedule.primary.name]
        steps_per_epoch = math.ceil(primary.batches_per_epoch / training.gradient_accumulation_steps)
        self.total_steps = training.max_steps or max(1, self.schedule.steps_for(math.ceil(training.epochs * steps_per_epoch)))
        optimizer = _optimizer(model, groups, config, self.policy)
        warmup = training.warmup_ratio if training.warmup_ratio is not None else self.policy.warmup_ratio
        scheduler = get_scheduler(training.lr_scheduler or self.policy.lr_scheduler, optimizer,
                                  num_warmup_steps=int(warmup * self.total_steps),
                                  num_training_steps=self.total_steps)
        self.model, self.optimizer, self.scheduler = self.accelerator.prepare(model, optimizer, scheduler)
        self.step = 0
        self.identity = resume_identity(config, self.stage)

    @property
    def unwrapped(self):
        return self.accelerator.unwrap_model(self.model)

    @property
    def _sharded(self) -> bool:
        return self.accelerator.distributed_type in (DistributedType.FSDP, DistributedType.DEEPSPEED)

    # ------------------------------------------------------------------ checkpoints
    def save_checkpoint(self) -> None:
        """Write `checkpoints/step-N` atomically (staged, then renamed), keeping the newest few."""
        target = checkpoint.step_checkpoint_dir(self.output_dir, self.step)
        main = self.accelerator.is_main_process
        with (replace_directory(target) if main else contextlib.nullcontext()) as staging:
            # Under FSDP / DeepSpeed every rank writes its shard into the main process's staging folder.
            staging = Path(broadcast_object(str(staging) if main else None, self.accelerator))
            if self._sharded:
                self.accelerator.save_state(str(staging))
            elif main:
                parameters = dict(self.unwrapped.named_parameters())
                checkpoint.write_step_state(
                    staging, {n: parameters[n].detach().cpu().contiguous() for n in _trainable_names(self.unwrapped)},
                    {"optimizer": self.optimizer.state_dict(), "scheduler": self.scheduler.state_dict(),
                     "rng": torch.get_rng_state()})
            self.accelerator.wait_for_everyone()
            if main:
                checkpoint.write_trainer_state(staging, self.step, self.total_steps, self.identity)
        if main:
            checkpoint.rotate_step_checkpoints(self.output_dir, self.config.training.save_total_limit)
        self.accelerator.wait_for_everyone()

    def resume(self, path: Path) -> None:
        where = f"{self.config.source}: training.resume_from_checkpoint"
        state = checkpoint.read_trainer_state(path, where)
        self._check_resume_identity(path, state.get("identity"), where)
        if self._sharded:
            self.accelerator.load_state(str(path))
        else:
            parameters = dict(self.unwrapped.named_parameters())
            trainable = checkpoint.load_trainable(path)
            broken = checkpoint.first_non_finite(trainable)
            if broken is not None:
                earlier = checkpoint.last_finite_step_checkpoint(path.parent.parent)  # OUTPUT_DIR/checkpoints/step-N
                raise LinguaLiftError(f"{path / checkpoint.TRAINABLE_FILE}: {broken} holds NaN or inf values (the run "
                                      "had diverged); delete this checkpoint and resume from "
                                      + (f"{earlier}" if earlier else "the start, with a lower learning rate"))
            unknown = sorted(set(trainable) - set(_trainable_names(self.unwrapped)))
            if unknown:
                raise LinguaLiftError(f"{path / checkpoint.TRAINABLE_FILE}: holds tensors this run does not train "
                                      f"({unknown[0]}, …); the checkpoint is from another stage or model")
            with torch.no_grad():
                for name, tensor in trainable.items():
                    if parameters[name].shape != tensor.shape:
                        raise LinguaLiftError(f"{path / checkpoint.TRAINABLE_FILE}: {name} has shape "
                                              f"{tuple(tensor.shape)}, the model {tuple(parameters[name].shape)}")
                    parameters[name].copy_(tensor)
            saved = checkpoint.load_training_state(path)
            fresh = [(group["lr"], group["weight_decay"]) for group in self.optimizer.param_groups]
            self.optimizer.load_state_dict(saved["optimizer"])
            self.scheduler.load_state_dict(saved["scheduler"])
            torch.set_rng_state(saved["rng"])
            if self.config.training.resume_override:
                self._apply_fresh_hyperparameters(fresh)
        self.step = state["step"]
        logger.info("resumed from %s at step %d", path, self.step)

    def _check_resume_identity(self, path: Path, saved: dict | None, where: str) -> None:
        """Refuse a checkpoint of another stage, method, model, data or hyper-parameters (unless overridden)."""
        if saved is None:
            logger.warning("%s predates resume checks: its settings cannot be compared with this config", path)
            return
        defaults = {section: values for section, values in resume_identity(TrainConfig(), self.stage).items()
                    if isinstance(values, dict)}  # the model, data and training sections' declared defaults
        changed = _differences(_with_added_options(_without_removed_options(saved), defaults), self.identity)
        if not changed:
            return
        if self.config.training.resume_override:
            logger.warning("resuming %s despite changed settings (training.resume_override): %s; the new "
                           "hyper-parameters apply from the checkpoint's step on", path, "; ".join(changed))
            return
        raise LinguaLiftError(f"{where}: {path} was trained with different settings: {'; '.join(changed[:3])}"
                              f"{' and more' if len(changed) > 3 else ''}; restore them, start a new "
                              "training.output_dir, or set training.resume_override: true to continue anyway")

    def _apply_fresh_hyperparameters(self, fresh: list[tuple[float, float]]) -> None:
        """After loading an old optimizer/scheduler state, use this config's learning rates and weight decay."""
        from torch.optim.lr_scheduler import LambdaLR

        scheduler = getattr(self.scheduler, "scheduler", self.scheduler)  # accelerate wraps it
        for group, (lr, weight_decay) in zip(self.optimizer.param_groups, fresh):
            group["initial_lr"], group["weight_decay"] = lr, weight_decay
        scheduler.base_lrs = [lr for lr, _ in fresh]
        if isinstance(scheduler, LambdaLR):
            for group, base, factor in zip(self.optimizer.param_groups, scheduler.base_lrs, scheduler.lr_lambdas):
                group["lr"] = base * factor(scheduler.last_epoch)
            scheduler._last_lr = [group["lr"] for group in self.optimizer.param_groups]
        else:
            logger.warning("resume_override: %s keeps the checkpoint's learning rates", type(scheduler).__name__)

    # ------------------------------------------------------------------ loop
    def _micro_batch(self, objective: Objective, index: int) -> Batch:
        examples = [objective.examples[i] for i in self.batches[objective.name].indices(index)]
        return objective.collate(examples).to(self.accelerator.device)

    def train(self) -> Path:
        """Run to the last step; returns `OUTPUT_DIR/final`. The output folder is locked meanwhile: a second
        training started into it (the same command twice) fails at once instead of overwriting checkpoints. A run
        that fails before writing anything (a bad resume checkpoint, say) leaves no empty folder behind."""
        if not self.accelerator.is_main_process:
            return self._train()
        with checkpoint.locked_folder(self.output_dir, f"training.output_dir {self.output_dir}",
                                      keep=lambda folder: any(folder.iterdir())):
            return self._train()

    def _train(self) -> Path:
        training = self.config.training
        if self.resume_from is not None:
            self.resume(self.resume_from)
        elif training.resume_from_checkpoint == "latest":
            logger.info("resume_from_checkpoint=latest: no checkpoint in %s, starting fresh", self.output_dir)
        elif self.earlier_checkpoint is not None:
            logger.warning("%s holds step checkpoints of an earlier run (up to %s); starting again from step 0 "
                           "(set training.resume_from_checkpoint: latest to continue it)", self.output_dir,
                           self.earlier_checkpoint.name)
        main = self.accelerator.is_main_process
        if main:
            self.output_dir.mkdir(parents=True, exist_ok=True)
            with atomic_write(self.output_dir / checkpoint.TRAIN_CONFIG_FILE) as handle:
                yaml.safe_dump(self.config.to_dict(), handle, sort_keys=False, allow_unicode=True)
            self._trim_log()
        writer = self._tensorboard() if main and training.tensorboard else None
        accumulation = training.gradient_accumulation_steps
        trainable = [p for p in self.model.parameters() if p.requires_grad]
        logger.info("%s/%s: %d examples, %d steps (objective %s), %s trainable parameters, %d process(es)",
                    self.config.method, self.stage, len(self.schedule.primary.examples), self.total_steps,
                    training.objective, f"{sum(p.numel() for p in trainable):,}", self.accelerator.num_processes)
        bar = tqdm(total=self.total_steps, initial=self.step, desc=f"{self.config.method}/{self.stage}",
                   disable=not main, unit="step")
        started, window_loss, window_steps, window_tokens = time.perf_counter(), 0.0, 0, 0
        window_objectives: dict[str, list[float]] = {}
        self.model.train()
        self.keep_frozen_in_eval()
        initial_norm, warned = self._check_finite(math.nan, trainable), False
        while self.step < self.total_steps:
            objective, earlier = self.schedule.at(self.step)
            loss, tokens = self.optimizer_step(
                [self._micro_batch(objective, earlier * accumulation + micro) for micro in range(accumulation)],
                trainable, objective,
            )
            window_objectives.setdefault(objective.name, []).append(loss)
            norm = self._check_finite(loss, trainable, step=self.step + 1)
            if not warned and norm > WEIGHT_GROWTH_WARNING * max(initial_norm, 1e-6):
                warned = True
                logger.warning("step %d: the norm of the trained weights grew from %.3g to %.3g (x%.0f); the learning "
                               "rate (%g) is probably too high", self.step + 1, initial_norm, norm,
                               norm / max(initial_norm, 1e-6), self.scheduler.get_last_lr()[0])
            window_loss += loss
            window_tokens += tokens
            self.step += 1
            window_steps += 1
            bar.update(1)
            if self.step % training.log_every == 0 or self.step == self.total_steps:
                record = {"step": self.step, "loss": window_loss / window_steps, "lr": self.scheduler.get_last_lr()[0],
                          "tokens_per_s": window_tokens / max(time.perf_counter() - started, 1e-9)}
                if training.objective != "lm":  # the two losses are on different scales: log them apart
                    record.update({f"loss_{name}": sum(losses) / len(losses)
                                   for name, losses in sorted(window_objectives.items())})
                    record["example_passes"] = self.schedule.example_passes(self.step, accumulation)
                if main:
                    self._log(record, writer)
                    bar.set_postfix(loss=f"{record['loss']:.4f}")
                started, window_loss, window_steps, window_tokens = time.perf_counter(), 0.0, 0, 0
                window_objectives = {}
            if training.save_every and self.step % training.save_every == 0 and self.step < self.total_steps:
                self.save_checkpoint()
        bar.close()
        if writer:
            writer.close()
        return self.save_final()

    def _check_finite(self, loss: float, trainable: list[torch.nn.Parameter], step: int | None = None) -> float:
        """The trained weights' L2 norm; stops the run (one line, naming the step) on a NaN/inf loss or weight.

        Checked after every optimiser step, before anything is saved, so every step checkpoint and `final`
        hold finite weights. All processes agree (one reduction), so no rank is left waiting.
        """
        with torch.no_grad():
            squares = sum((torch.linalg.vector_norm(p.detach(), dtype=torch.float32).to(self.accelerator.device) ** 2
                           for p in trainable), torch.zeros((), device=self.accelerator.device))
            flags = torch.stack([squares.to(self.accelerator.device),
                                 torch.tensor(float(step is not None and not math.isfinite(loss)),
                                              device=self.accelerator.device)])
            if self.accelerator.num_processes > 1:
                flags = self.accelerator.reduce(flags, reduction="sum")
        squares, bad_loss = float(flags[0]), float(flags[1]) > 0
        norm = math.sqrt(squares) if math.isfinite(squares) else math.inf
        if step is not None and (bad_loss or not math.isfinite(squares)):
            what = f"the loss is {loss}" if bad_loss else "the trained weights are no longer finite"
            latest = checkpoint.last_finite_step_checkpoint(self.output_dir)
            kept = f"the last finite checkpoint is {latest}" if latest else "there is no finite step checkpoint"
            raise LinguaLiftError(
                f"{self.config.source}: training diverged at step {step}: {what} (learning rate "
                f"{self.scheduler.get_last_lr()[0]:g}); nothing was saved for it and {kept}; lower "
                "training.learning_rate (or set training.max_grad_norm) and train again"
            )
        return norm

    def _trim_log(self) -> None:
        """A fresh run starts a new loss log; a resumed one drops the records after its checkpoint's step."""
        path = self.output_dir / LOG_FILE
        if not path.is_file():
            return
        if self.step == 0:
            path.unlink()
            return
        kept = [line for line in path.read_text(encoding="utf-8", errors="replace").splitlines(keepends=True)
                if (step := _logged_step(line)) is not None and step <= self.step]
        with atomic_write(path) as handle:
            handle.writelines(kept)

    def optimizer_step(self, micro_batches: list[Batch], trainable: list[torch.nn.Parameter],
                       objective: Objective | None = None) -> tuple[float, int]:
        """Forward/backward every micro-batch, then one optimiser step; returns (loss, tokens). `bench` times this.

        `objective` computes the loss (`lingualift.train.objectives`); by default the model's own (LM) loss.
        """
        total_loss, tokens = 0.0, 0
        for micro, batch in enumerate(micro_batches):
            sync = micro == len(micro_batches) - 1
            with self.accelerator.autocast(), (contextlib.nullcontext() if sync else self.accelerator.no_sync(self.model)):
                loss = (objective.loss(self.model, batch) if objective is not None
                        else self.model(**batch.model_inputs(), **self.target.forward_options).loss)
                loss = loss / len(micro_batches)
                self.accelerator.backward(loss)
            total_loss += loss.item()
            tokens += batch.num_tokens
        if self.config.training.max_grad_norm:
            self.accelerator.clip_grad_norm_(trainable, self.config.training.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return total_loss, tokens

    def keep_frozen_in_eval(self) -> None:
        """After `model.train()`: frozen groups stay in eval mode (no dropout), as the freeze policy set them."""
        for module in self.target.parameter_groups(self.unwrapped).values():
            if not any(p.requires_grad for p in module.parameters()):
                module.eval()

    def _tensorboard(self):
        try:
            from torch.utils.tensorboard import SummaryWriter
        except ImportError:  # tensorboard is a dependency, but a minimal install may lack it
            logger.warning("tensorboard not installed; logging to %s only", LOG_FILE)
            return None
        return SummaryWriter(log_dir=str(self.output_dir / "tensorboard"))

    def _log(self, record: dict, writer) -> None:
        with open(self.output_dir / LOG_FILE, "a", encoding="utf-8") as handle:
            handle.write(json.dumps(record) + "\n")
        if writer:
            for key in ("loss", "lr", "tokens_per_s"):
                writer.add_scalar(f"train/{key}", record[key], record["step"])

    def save_final(self) -> Path:
        self.accelerator.wait_for_everyone()
        model = self.unwrapped
        if self._sharded:
            state = self.accelerator.get_state_dict(self.model)
            model.load_state_dict(state, strict=False)
        if self.accelerator.is_main_process:
            final = self.output_dir / checkpoint.FINAL_DIR
            self.target.save(model, final)  # staged, swapped atomically
            logger.info("saved %s", final)
        self.accelerator.wait_for_everyone()
        return self.output_dir / checkpoint.FINAL_DIR


def export_step_checkpoint(step_dir: str | os.PathLike, destination: str | os.PathLike,
                           data_dir: str | None = None) -> Path:
    """Write a run's step checkpoint as a loadable model (`destination`, like `final`), e.g. to evaluate a
    stage-1 run at several steps. The model is rebuilt from the run's `train_config.yaml` (no warm start: the
    checkpoint's tensors replace every trained weight) and saved the way the run saves `final`."""
    from lingualift.schema import read_yaml
    from lingualift.train.config import config_from_dict

    step_dir = Path(step_dir)
    run_config = step_dir.parent.parent / checkpoint.TRAIN_CONFIG_FILE
    if not run_config.is_file():
        raise LinguaLiftError(f"{step_dir}: not a step checkpoint of a training run (no {run_config})")
    state = checkpoint.read_trainer_state(step_dir, str(step_dir))
    config = config_from_dict(read_yaml(run_config), str(run_config), data_dir=data_dir)
    if config.training.tuning == "lora":
        raise LinguaLiftError(f"{step_dir}: exporting a LoRA run's step checkpoint is not supported; resume the "
                              "run to its end instead")
    stage, policy = policy_for(config.method, config.stage, config.source)
    target, model = training_target(config, stage, policy)
    parameters = dict(model.named_parameters())
    trainable = checkpoint.load_trainable(step_dir)
    unknown = sorted(set(trainable) - set(parameters))
    if unknown:
        raise LinguaLiftError(f"{step_dir / checkpoint.TRAINABLE_FILE}: holds tensors the run's model lacks "
                              f"({unknown[0]}, …)")
    with torch.no_grad():
        for name, tensor in trainable.items():
            parameters[name].copy_(tensor)
    target.save(model, destination)
    logger.info("exported %s (step %d) to %s", step_dir, state["step"], destination)
    return Path(destination)


def train(config: TrainConfig) -> Path:
    """Train one stage or baseline; returns the directory of the final model (`OUTPUT_DIR/final`)."""
    return Trainer(config).train()
