"""Every default Gimel uses, named and documented in one place.

The sets of values a default is chosen from (counting modes, analyses, registrations) are
the enums of :mod:`gimel_core.vocabulary`.
"""

from .vocabulary import Analysis, Mode, Registration

NAMESPACE = "alephbet"
"""Namespace used when a request names none; Alephbet's adapters default to it too."""

COUNTING = Mode.HLL
"""Counting mode for new experiments: ``hll`` (HyperLogLog, fixed 12 KB) or ``exact``."""

DEDUP_WINDOW = 0
"""Seconds an ``exact`` experiment remembers a uuid, so a resent event is counted once; 0
(``life``, the default): for its whole life, until it is reset or deleted."""

DEDUP_BUCKETS = 4
"""The de-dup window is split into this many time buckets; a record lives window..1.25 window."""

MAX_NAME_LENGTH = 128
"""Longest namespace, experiment, variant, goal or uuid, in characters."""

MAX_VALUE = 1e12
"""Largest magnitude of a value, a visitor's running total or a covariate an event may carry
(and of a declared cap): a participant's square stays below 1e24, and sums over 1e7
participants far from a float's range, so no sum can become infinite."""

PARTICIPATE = "participate"
"""The pseudo-goal Alephbet sends when a visitor enters an experiment."""

REDIS_TIMEOUT = 0.4
"""Seconds to wait for Redis to connect or answer before the request fails with 503."""

REDIS_RETRIES = 1
"""Extra attempts after a connection error or timeout (tracking is idempotent, so safe)."""

WEBHOOK_TIMEOUT = 3.0
"""Seconds an alert's delivery may wait for its receiver (connecting, or between two reads)."""

WATCH_INTERVAL = 3600
"""Seconds between the watcher's passes (``GIMEL_WATCH_INTERVAL``; 0: ``gimel serve`` runs no
watcher): hourly, which the always-valid analyses allow without crying wolf."""

WATCH_SILENT_HOURS = 24
"""Hours without events after which a declared experiment is announced silent."""

RETRY_AFTER = 2
"""Seconds a client is told to wait (``Retry-After``) when the store is unavailable."""

DATA_DIR = ".gimel"
"""Folder of the embedded Redis (data, append-only file, generated API key) for local runs."""

HOST = "127.0.0.1"
"""Address ``gimel serve`` listens on."""

PORT = 8000
"""Port ``gimel serve`` listens on."""


def local_url(host: str = HOST, port: int = PORT) -> str:
    """Base URL of ``gimel serve`` on this machine, where the CLI looks when told no other."""
    return f"http://{host}:{port}"


API_KEY_FILE = "api-key"
"""File in the data folder holding the key ``gimel serve`` generates when none is configured
(owner-only); the CLI reads it, so ``--url`` needs no ``--api-key`` against a local server."""

REGION = "us-east-1"
"""AWS region of a deployment; serverless.yml falls back to the same value."""

STAGE = "dev"
"""Deployment stage (API Gateway stage, ``gimel-<stage>`` names); as in serverless.yml."""

BATCH_MAX_EVENTS = 500
"""Most events one ``POST /track`` may carry."""

BATCH_MAX_BYTES = 1_000_000
"""Largest ``POST /track`` body, in bytes; larger ones get 413 before being read."""

MAX_QUERY_BYTES = 8192
"""Longest query string ``/track`` reads; longer: 414. Five 128-character names of 4-byte
characters, percent-encoded, take about 7.7 KB: every valid event fits."""

MAX_NAMESPACES = 100
"""Namespaces Gimel will create; events for more are dropped (key-space explosion guard)."""

MAX_EXPERIMENTS = 1000
"""Experiments per namespace (enforced per registry shard, so about this many)."""

MAX_VARIANTS = 20
"""Variants per experiment."""

MAX_GOALS = 50
"""Goals per experiment."""

OPEN_BUDGET_BYTES = 32_000_000
"""Bytes the undeclared experiments of one namespace may make Redis hold in ``open``
registration (names, counters at their full size, history), spread evenly over its 16
registry shards: one experiment holds at most a 16th. What would pass it is dropped."""

OPEN_IDLE_DAYS = 30
"""Days without an event after which an undeclared experiment is removed, keys and all."""

DEDUP_MAX_RECORDS = 25_000_000
"""``exact``: most uuid records one experiment holds (about 8.8 bytes each: 220 MB), one per
(uuid, goal, variant), 5 million visitors in 5 counters; new uuids past it are dropped. With a
window, each of its at most DEDUP_BUCKETS + 1 buckets holds a fifth."""

PAGE_LIMIT = 20
"""Experiments per ``GET /experiments`` page when ``limit`` is not given."""

PAGE_MAX_LIMIT = 100
"""The largest ``limit`` a ``GET /experiments`` page takes."""

PAGE_BUDGET = 4_000_000
"""Bytes the experiments of one ``GET /experiments`` page may take once encoded: a page ends
before passing it (with at least one experiment), so every answer stays well under 5 MB and
under Lambda's 6 MB response limit, its JSON envelope included."""

PAGE_COUNTERS = 21_000
"""Counters (a variant on a goal or on ``participate``) one ``GET /experiments`` page reads
and analyses at most, with at least one experiment: what its time grows with. 20 experiments
at the caps (20 variants, 50 goals): a summary page of them took 0.3 s on one laptop core."""

BOT_PATTERN = (
    r"bot\b|crawl|spider|slurp|scrap|archiver|bingpreview|facebookexternalhit|embedly"
    r"|preview|lighthouse|pagespeed|pingdom|uptimerobot|statuscake|phantomjs"
    r"|headlesschrome|ahrefs|semrush|yandex|baidu|bytespider|petalbot|gptbot|ccbot|claudebot"
    r"|applebot"
    r"|curl/|wget/|httpie/|powershell|postmanruntime|insomnia/"
    r"|python-requests|python-urllib|python-httpx|aiohttp|go-http-client|okhttp|java/"
    r"|httpclient|libwww|axios/|node-fetch|undici|guzzlehttp|^node$"
)
"""User agents answered 200 but not counted (case-insensitive regex; empty disables): crawlers,
link previews, monitors, headless browsers, and the agents that command-line tools and HTTP
libraries send unless told otherwise (curl, Wget, python-requests, Python's urllib, Node's
fetch, ...). A script that sends a browser's agent, or none, is counted."""

ANALYSIS = Analysis.SEQUENTIAL
"""Analysis method of new experiments: ``sequential`` (always-valid p-values and intervals,
safe to look at every day) or ``fixed`` (fixed-horizon: valid at one planned look only)."""

MIN_TRIALS = 100
"""Below this many participants in either arm, no comparison is decided ("not enough data"),
so a group-sequential plan must reach it in every variant."""

MIN_CONVERSIONS = 25
"""In ``sequential`` analysis, a look enters a comparison's running values (and so can decide)
only once both arms have :data:`MIN_TRIALS` participants and this many converting on the goal.
The confidence sequence is asymptotic: read every hour from the first visitors on, an A/A test
was declared a winner on a handful of conversions, 6% of the time instead of at most 5%. The
same minimum (100 visitors and 25 conversions per variation) is the one Optimizely's Stats
Engine waits for before it shows significance."""

SEQUENTIAL_TUNING = 5000
"""N*, the sample size at which a sequential interval is tightest relative to a fixed one
(GrowthBook's default)."""

BOT_AGENT_CHARS = 512
"""Only this many leading characters of a User-Agent are matched against the bot pattern, so
a huge header costs a bounded scan (a 250 KB agent took 0.27 s); real agents are shorter."""

BOT_VERDICTS = 4_096
"""User-Agents whose bot verdict a process remembers (the most recent): a handful of agents
send most events, and the regex costs more than the rest of parsing a request. At most
``BOT_VERDICTS * BOT_AGENT_CHARS`` characters kept."""

REGISTRATION = Registration.OPEN
"""Which experiments are counted: ``open`` (any a visitor names, the zero-config start of
``gimel serve``) or ``declared`` (only those declared with a plan; ``sls deploy``'s default)."""

# -- one source's budget (gimel_core/sources.py) ---------------------------------------------

SOURCE_BUDGET = 30
"""New events one source (client address, an IPv6 /64) may add to one experiment per clock
hour; past it, events are answered 200 and not counted (``meta.dropped.source``); 0 turns the
budget off. A visitor adds two or three (``participate``, a goal or two), so 30 lets 10-15
visitors an hour from one office or home network into the same experiment, while 30 fake
conversions leave a 1,000-per-arm experiment's decision where it was (README, "One source")."""

SOURCE_WINDOW = 3_600
"""Seconds a source's counts are kept: they are per clock hour, and expire when it ends."""

TRUSTED_PROXY_HOPS = 1
"""Proxies of your own that append to the trusted header (GIMEL_TRUSTED_PROXY_HEADER)."""
