"""One settings object: env vars `CHATBOT_*` (nested with `__`), an optional `.env`, then defaults.

Only entry points call `load_settings()`; everything below receives the object (or a section of it)
as an argument, so tests can build settings by hand and nothing deep inside reads the environment.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field, SecretStr, field_validator, model_validator
from pydantic.fields import FieldInfo
from pydantic_settings import (
    BaseSettings,
    NoDecode,
    PydanticBaseSettingsSource,
    SettingsConfigDict,
    SettingsError,
)

REPO_ROOT = Path(__file__).resolve().parent.parent
log = logging.getLogger(__name__)


class TextSettings(BaseModel):
    """How raw text becomes tokens; stored in every checkpoint so replies are processed alike."""

    spacy_model: str | None = None  # None -> spacy.blank("en"); a name must be installed already
    lowercase: bool = True
    mask_emails: bool = True
    mask_urls: bool = True
    mask_numbers: bool = True


class ModelSettings(BaseModel):
    """Sizes of the encoder-decoder; saved as the checkpoint's `config.json`."""

    cell: Literal["gru", "lstm"] = "gru"
    # Bounded so a damaged config.json is refused before anything is allocated.
    embedding_dim: int = Field(256, ge=1, le=4096)
    hidden_size: int = Field(256, ge=1, le=4096)
    num_layers: int = Field(2, ge=1, le=8)
    dropout: float = Field(0.2, ge=0.0, lt=1.0)
    attention: Literal["dot", "general", "concat"] = "general"
    tie_embeddings: bool = True


LrSchedule = Literal["linear", "cosine", "constant", "plateau"]


class TrainingSettings(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # an infinite rate or budget is a typo

    batch_size: int = Field(64, ge=1)
    learning_rate: float = Field(1e-3, gt=0)
    max_epochs: int = Field(20, ge=1)
    max_steps: int | None = Field(None, ge=1)
    time_budget_minutes: float | None = None
    clip_grad_norm: float = 5.0
    label_smoothing: float = Field(0.0, ge=0.0, lt=1.0)
    # The learning rate: warmup, then linear/cosine decay to zero at the end of the budget
    # (max_steps, the time budget, or max_epochs, whichever ends first); "plateau" cuts it by
    # lr_decay_factor when validation stops improving; "constant" keeps it.
    lr_schedule: LrSchedule = "linear"
    warmup_steps: int = Field(0, ge=0)
    lr_decay_factor: float = 0.5
    lr_decay_patience: int = 0  # validations without improvement before "plateau" cuts the LR
    early_stopping_patience: int = 3  # validations without improvement before stopping
    validate_every_steps: int | None = Field(None, ge=1)  # None: at the end of each epoch
    sample_replies: int = Field(3, ge=0)  # validation contexts whose greedy reply is logged
    average_last: int = Field(0, ge=0)  # average the weights of the last N validations (0: off)
    seed: int = Field(1234, ge=0, lt=2**32)
    # bfloat16 autocast: None decides by the hardware (CUDA with bf16, or a CPU with native
    # bf16 instructions, where it measured 1.5x faster than fp32 training on this project's CPU).
    bf16: bool | None = None
    min_count: int = Field(2, ge=1)
    max_vocab: int = Field(8000, ge=10)
    max_length: int = Field(20, ge=2)  # tokens per context / reply; longer pairs are dropped
    context_turns: int = Field(1, ge=1)  # 1 = previous turn only; k = last k turns joined by <sep>
    valid_fraction: float = 0.05
    test_fraction: float = 0.05
    device: str = "auto"  # auto | cpu | cuda | cuda:N


class DecodingSettings(BaseModel):
    model_config = ConfigDict(allow_inf_nan=False)  # inf or nan would poison every decode

    # rerank: sample `rerank_candidates` replies per context, keep the best scored (DialoGPT).
    strategy: Literal["greedy", "beam", "sample", "rerank"] = "greedy"
    beam_size: int = Field(5, ge=1, le=256)
    length_penalty: float = 0.6  # GNMT alpha; 0 disables
    no_repeat_ngram: int = Field(3, ge=0)  # 0 disables
    # No token right after itself ("pizza pizza"), and each content word (a word that is not an
    # English stop word) at most once a reply ("books books books", "movies, and movies"): the
    # word loops a reader judged not sensible (see models/default/README.md).
    no_repeat_words: bool = False
    min_length: int = Field(1, ge=0)  # every strategy: tokens before <eos> is allowed
    max_length: int = Field(20, ge=1)
    # sample and rerank; bounded: 0.01 is all but greedy and 100 all but uniform, while beyond
    # them the logits divided by it overflow float32 (a traceback deep in sampling).
    temperature: float = Field(0.8, ge=0.01, le=100)
    top_k: int = Field(0, ge=0)
    top_p: float = Field(0.9, gt=0, le=1)
    # rerank's score: mean log p(reply | context) per token + rerank_length_weight * tokens
    # (+ mmi_weight * log p(context | reply) with a reverse model). On the default model and
    # eval/prompts.txt, 0.1 doubled the mean reply length (3.6 -> 6.8 tokens) and cut generic
    # replies (56 % -> 30 %) at greedy's mean log-prob per token; 0.2 began to ramble.
    rerank_candidates: int = Field(16, ge=1, le=256)
    rerank_length_weight: float = 0.1
    mmi_weight: float = 0.5  # weight of log p(context | reply) when a reverse model is given
    mmi_reverse_dir: Path | None = None
    # Words and phrases never generated (one per line, `#` comments; the retraining blocklist's
    # format). None here; the bot passes its retraining blocklist (retrain.blocklist_path).
    blocklist_path: Path | None = None
    quantize_int8: bool = False
    device: str = "cpu"


class StorageSettings(BaseModel):
    pool_size: int = 10
    max_overflow: int = 20
    pool_timeout: float = 30.0
    sqlite_busy_timeout_ms: int = 30000
    retention_days: int | None = None  # None keeps messages forever
    auto_upgrade: bool = False


class TelegramSettings(BaseModel):
    token: SecretStr | None = None
    base_url: str = "https://api.telegram.org/bot"
    admin_ids: Annotated[list[int], NoDecode] = Field(default_factory=list)
    rate_limit_messages: int = 20  # per user ...
    rate_limit_seconds: float = 60.0  # ... in this many seconds
    # `chatbot telegram`: webhook secret (env CHATBOT_TELEGRAM__WEBHOOK_SECRET_TOKEN), Bot API I/O.
    webhook_secret_token: SecretStr | None = None
    poll_timeout_seconds: int = Field(10, ge=0)  # getUpdates long poll
    request_timeout_seconds: float = Field(10.0, gt=0)  # connect/read/write/pool, per request
    flood_messages_per_second: float = Field(30.0, ge=0)  # outgoing, whole bot; 0 turns it off
    flood_group_messages_per_minute: float = Field(20.0, ge=0)  # outgoing, per group; 0: off
    flood_max_retries: int = Field(3, ge=0)  # retries after a 429 RetryAfter
    send_retry_delay_seconds: float = Field(0.5, ge=0)  # doubled after each failed send
    send_retry_max_delay_seconds: float = Field(60.0, ge=0)  # ... up to this
    send_give_up_after_seconds: float = Field(86400.0, gt=0)  # an undeliverable reply, given up
    # Delivery: updates are stored before Telegram is told they arrived, replies before they are
    # sent; a process claims work with a lease it keeps renewing, which runs out if it dies.
    delivery_lease_seconds: float = Field(30.0, gt=0)
    delivery_poll_seconds: float = Field(1.0, gt=0)  # looking for work other processes left
    update_max_attempts: int = Field(5, ge=1)  # claims of one update before it is given up
    delivery_keep_days: float = Field(7.0, gt=0)  # handled updates, sent messages kept this long
    database_retry_max_delay_seconds: float = Field(5.0, gt=0)  # while the database is down
    shutdown_grace_seconds: float = Field(10.0, ge=0)  # for work in progress when stopping
    # Updates handled at once: two micro-batches' worth. More only adds HTTP connections, and
    # httpx's pool scans every connection on every request (measured: 64 vs 256 halves p95).
    concurrent_updates: int = Field(64, ge=1)
    typing_delay_seconds: float = Field(0.5, ge=0)  # "typing…" only for replies slower than this
    # HTTP connections to the Bot API, and requests in flight at once (the rest wait their turn):
    # httpx's pool rescans every connection whenever one is taken or given back, so more cost
    # CPU on every request (see bot/telegram/bot_api_request.py). 16 carry 160 requests/s at a
    # 100 ms round trip, 16/s at 1 s: raise it for a Bot API server that far away.
    connection_pool_size: int = Field(16, ge=1)
    # /metrics, /healthz, /readyz on a listener of their own (`--metrics-port`; the only way to
    # reach them in polling mode; the webhook server serves them too). None: no listener.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_listen: str = "127.0.0.1"
    export_cooldown_seconds: float = Field(600.0, ge=0)  # one /export per user per this; 0: off

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_ids(cls, value: object) -> object:
        """Accept `CHATBOT_ADMIN_IDS=1,2,3` as well as a JSON list."""
        if isinstance(value, str):
            return [int(part) for part in value.replace(";", ",").split(",") if part.strip()]
        if isinstance(value, int):
            return [value]
        return value


class DialogueSettings(BaseModel):
    # How many turns of context a reply sees is the active model's (its data recipe's).
    max_input_chars: int = Field(4096, ge=1)
    batch_window_ms: float = Field(5.0, ge=0)
    max_batch_size: int = Field(32, ge=1)


# Fine-tuning a trained model differs from training one from scratch in these settings only.
_FINE_TUNING: dict[str, Any] = {"max_epochs": 3, "learning_rate": 5e-4, "time_budget_minutes": 30.0}


class RetrainSettings(BaseModel):
    """Retraining on new chat logs (`chatbot retrain`, `/retrain`, the scheduler)."""

    # Which pairs: nothing runs with fewer new ones (unless forced); the blocklist drops pairs.
    min_new_pairs: int = Field(50, ge=1)
    blocklist_path: Path = REPO_ROOT / "bot" / "retraining" / "blocklist.txt"
    settle_seconds: float = Field(60.0, ge=0)  # messages younger than this wait for the next run
    heldout_fraction: float = Field(0.1, gt=0, lt=1)  # of the new pairs, for the gate only
    # Fine-tuning: new pairs (repeated) mixed with a sample of the base corpus's training split.
    base_sources: list[str] = Field(default_factory=lambda: ["chitchat"])
    base_sample_pairs: int = Field(2000, ge=0)
    new_pair_repeats: int = Field(2, ge=1)
    new_word_min_count: int = Field(2, ge=1)  # a new word needs this many uses to get a row
    max_new_words: int = Field(2000, ge=0)
    # ... and this many different people who wrote it (CHATBOT_RETRAIN__VOCAB_MIN_USERS): no
    # one person's own words (a name, a secret) get into a model's vocabulary.
    vocab_min_users: int = Field(3, ge=2)  # at least two, or /forget's answer would be untrue
    # How the worker trains (env CHATBOT_RETRAIN__TRAINING__LEARNING_RATE, ...). Fields not given
    # keep the fine-tuning defaults (_FINE_TUNING), not those of training from scratch.
    training: TrainingSettings = Field(default_factory=lambda: TrainingSettings(**_FINE_TUNING))
    grace_minutes: float = Field(10.0, ge=0)  # loading + evaluation on top, then it is killed
    cpu_threads: int = Field(0, ge=0)  # torch threads of the training process; 0: torch decides
    # The gate: base-validation perplexity may worsen by this fraction at most, and perplexity
    # on the held-out new pairs must improve.
    ppl_tolerance: float = Field(0.05, ge=0)
    versions_dir: Path | None = None  # None: data_dir / "models"
    stale_after_hours: float = Field(6.0, gt=0)  # a run "running" longer than this died
    # Scheduling (cron expressions are read in this time zone).
    timezone: str = "UTC"
    misfire_grace_seconds: int = Field(3600, ge=1)  # a run missed by less still happens once
    poll_seconds: float = Field(30.0, gt=0)  # how often a scheduler rereads the job store
    # Process roles (README, "Deploying at scale"). Of the processes that run schedules, one
    # leads (PostgreSQL: an advisory lock; SQLite: a lock file) and the others wait. Whether
    # `chatbot telegram` is one of them: "auto" with SQLite only (one process does everything;
    # with PostgreSQL the schedules are `chatbot scheduler`'s), "always", or "never".
    run_scheduler: Literal["auto", "always", "never"] = "auto"
    leader_poll_seconds: float = Field(2.0, gt=0)  # standbys try to lead, the leader checks
    heartbeat_seconds: float = Field(10.0, gt=0)  # a running run's heartbeat in the database
    dead_after_seconds: float = Field(60.0, gt=0)  # a run without a heartbeat this long died
    # Distributed fine-tuning: torch.distributed data parallelism, launched by torchrun's elastic
    # agent; nproc processes on this node (and nnodes nodes meeting at rdzv_endpoint).
    nproc: int = Field(1, ge=1)
    nnodes: int = Field(1, ge=1)
    rdzv_endpoint: str | None = None  # host:port, needed with nnodes > 1
    rdzv_id: str = "chatbot-retrain"  # the same on every node of a run
    # `chatbot scheduler`: /metrics (leader or standby, the last run) on this port; None: none.
    metrics_port: int | None = Field(None, ge=0, le=65535)
    metrics_listen: str = "127.0.0.1"

    @model_validator(mode="after")
    def _roles_fit(self) -> RetrainSettings:
        if self.dead_after_seconds < 3 * self.heartbeat_seconds:
            raise ValueError(
                "dead_after_seconds must be at least 3 x heartbeat_seconds: a run that missed "
                "one heartbeat (a slow database) is not dead"
            )
        if self.nnodes > 1 and not self.rdzv_endpoint:
            raise ValueError("nnodes > 1 needs rdzv_endpoint (host:port of the rendezvous)")
        return self

    @field_validator("training", mode="before")
    @classmethod
    def _over_fine_tuning_defaults(cls, value: object) -> object:
        """`CHATBOT_RETRAIN__TRAINING__LEARNING_RATE` alone must not bring back 20 epochs."""
        return {**_FINE_TUNING, **value} if isinstance(value, Mapping) else value

    @field_validator("training")
    @classmethod
    def _has_time_budget(cls, value: TrainingSettings) -> TrainingSettings:
        """The worker's hard time limit is this budget plus `grace_minutes`."""
        if value.time_budget_minutes is None or value.time_budget_minutes <= 0:
            raise ValueError("time_budget_minutes must be a positive number of minutes")
        return value


# One spelling per environment variable. These settings live in nested sections, but the
# environment names them as the README does (e.g. CHATBOT_TELEGRAM_TOKEN, through the flat fields
# of `Settings`); the nested spelling, or a retraining setting's name before it moved into
# `retrain.training`, is refused with the name to use instead.
_RENAMED: dict[tuple[str, str], str] = {
    ("telegram", "token"): "CHATBOT_TELEGRAM_TOKEN",
    ("telegram", "base_url"): "CHATBOT_TELEGRAM_BASE_URL",
    ("telegram", "admin_ids"): "CHATBOT_ADMIN_IDS",
    ("storage", "auto_upgrade"): "CHATBOT_DB_AUTO_UPGRADE",
    ("retrain", "epochs"): "CHATBOT_RETRAIN__TRAINING__MAX_EPOCHS",
    ("retrain", "learning_rate"): "CHATBOT_RETRAIN__TRAINING__LEARNING_RATE",
    ("retrain", "batch_size"): "CHATBOT_RETRAIN__TRAINING__BATCH_SIZE",
    ("retrain", "time_budget_minutes"): "CHATBOT_RETRAIN__TRAINING__TIME_BUDGET_MINUTES",
    ("retrain", "device"): "CHATBOT_RETRAIN__TRAINING__DEVICE",
    ("retrain", "seed"): "CHATBOT_RETRAIN__TRAINING__SEED",
}
# Settings that are gone: set anyway, they are ignored with one warning that says why.
_REMOVED: dict[tuple[str, str], str] = {
    ("dialogue", "context_turns"): "the number of context turns is now the active model's own "
    "(from its data recipe)",
    ("telegram", "send_retries"): "a message is sent until it is delivered or refused for good, "
    "or given up after CHATBOT_TELEGRAM__SEND_GIVE_UP_AFTER_SECONDS",
}


def _env_name(section: str, key: str) -> str:
    return f"CHATBOT_{section.upper()}__{key.upper()}"


class _OneSpelling(PydanticBaseSettingsSource):
    """The environment (or `.env`) as read by `inner`, checked against `_RENAMED` and
    `_REMOVED`: a renamed variable is a `SettingsError`, a removed one a warning."""

    def __init__(self, inner: PydanticBaseSettingsSource, warned: set[str]) -> None:
        super().__init__(inner.settings_cls)
        self.inner = inner
        self.warned = warned  # shared by the env and `.env` sources: one warning per name

    def get_field_value(self, field: FieldInfo, field_name: str) -> tuple[Any, str, bool]:
        return self.inner.get_field_value(field, field_name)

    def _set_current_state(self, state: dict[str, Any]) -> None:
        super()._set_current_state(state)
        self.inner._set_current_state(state)

    def _set_settings_sources_data(self, states: dict[str, dict[str, Any]]) -> None:
        super()._set_settings_sources_data(states)
        self.inner._set_settings_sources_data(states)

    def __call__(self) -> dict[str, Any]:
        values = self.inner()
        for (section, key), name in _RENAMED.items():
            if isinstance(values.get(section), Mapping) and key in values[section]:
                raise SettingsError(
                    f"{_env_name(section, key)} is not read any more: set {name} instead"
                )
        for (section, key), why in _REMOVED.items():
            found = values.get(section)
            if isinstance(found, dict) and found.pop(key, None) is not None:
                name = _env_name(section, key)
                if name not in self.warned:
                    self.warned.add(name)
                    log.warning("%s is ignored: %s", name, why)
        return values


class Settings(BaseSettings):
    model_config = SettingsConfigDict(
        env_prefix="CHATBOT_",
        env_nested_delimiter="__",
        env_file=".env",
        env_file_encoding="utf-8",
        extra="ignore",
    )

    data_dir: Path = REPO_ROOT / "data"
    model_dir: Path = REPO_ROOT / "models" / "default"
    database_url: str | None = None
    log_level: str = "INFO"
    # "json": one JSON object per log line (time, level, logger, message, update_id, a salted
    # hash of the chat id, model version, latency). The salt: log_salt, or one generated and
    # stored in data_dir/log-salt (set log_salt alike on every replica).
    log_format: Literal["text", "json"] = "text"
    log_salt: SecretStr | None = None
    # Redis (CHATBOT_REDIS_URL, e.g. redis://127.0.0.1:6379/0): the Telegram rate limits are then
    # shared by every replica; unset, each process keeps its own. Keys start with the prefix
    # (CHATBOT_REDIS_KEY_PREFIX) and the bot's id, so bots and tests sharing a server don't mix.
    redis_url: SecretStr | None = None
    redis_key_prefix: str = Field("chatbot", min_length=1)

    text: TextSettings = Field(default_factory=TextSettings)
    model: ModelSettings = Field(default_factory=ModelSettings)
    training: TrainingSettings = Field(default_factory=TrainingSettings)
    decoding: DecodingSettings = Field(default_factory=DecodingSettings)
    storage: StorageSettings = Field(default_factory=StorageSettings)
    telegram: TelegramSettings = Field(default_factory=TelegramSettings)
    dialogue: DialogueSettings = Field(default_factory=DialogueSettings)
    retrain: RetrainSettings = Field(default_factory=RetrainSettings)

    # The environment's one spelling of four nested settings (CHATBOT_TELEGRAM_TOKEN,
    # CHATBOT_TELEGRAM_BASE_URL, CHATBOT_ADMIN_IDS, CHATBOT_DB_AUTO_UPGRADE; see _RENAMED): given,
    # they are copied into their sections, which is where the code reads them.
    telegram_token: SecretStr | None = Field(default=None, exclude=True)
    telegram_base_url: str | None = Field(default=None, exclude=True)
    admin_ids: Annotated[list[int] | None, NoDecode] = Field(default=None, exclude=True)
    db_auto_upgrade: bool | None = Field(default=None, exclude=True)

    @classmethod
    def settings_customise_sources(
        cls,
        settings_cls: type[BaseSettings],
        init_settings: PydanticBaseSettingsSource,
        env_settings: PydanticBaseSettingsSource,
        dotenv_settings: PydanticBaseSettingsSource,
        file_secret_settings: PydanticBaseSettingsSource,
    ) -> tuple[PydanticBaseSettingsSource, ...]:
        warned: set[str] = set()
        return (
            init_settings,
            _OneSpelling(env_settings, warned),
            _OneSpelling(dotenv_settings, warned),
            file_secret_settings,
        )

    @field_validator("admin_ids", mode="before")
    @classmethod
    def _split_admin_ids(cls, value: object) -> object:
        return TelegramSettings._split_ids(value)

    @field_validator("redis_url")
    @classmethod
    def _redis_scheme(cls, value: SecretStr | None) -> SecretStr | None:
        """A URL redis-py would refuse only once the bot runs is refused here, at start."""
        if value is None or not value.get_secret_value():
            return None
        scheme = value.get_secret_value().partition("://")[0]
        if scheme not in ("redis", "rediss", "unix"):
            raise ValueError("must start with redis://, rediss:// or unix://")
        return value

    @model_validator(mode="after")
    def _apply_flat_aliases(self) -> Settings:
        if self.telegram_token is not None:
            self.telegram.token = self.telegram_token
        if self.telegram_base_url:
            self.telegram.base_url = self.telegram_base_url
        if self.admin_ids is not None:
            self.telegram.admin_ids = self.admin_ids
        if self.db_auto_upgrade is not None:
            self.storage.auto_upgrade = self.db_auto_upgrade
        return self

    @property
    def resolved_database_url(self) -> str:
        """The configured URL, or a SQLite file in the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'chatbot.db'}"

    @property
    def versions_dir(self) -> Path:
        """Where retrained model versions get their own directories."""
        return self.retrain.versions_dir or self.data_dir / "models"


def load_settings(**overrides: Any) -> Settings:
    """Read the environment and `.env` once; keyword overrides win (used by the CLI and tests)."""
    return Settings(**overrides)
