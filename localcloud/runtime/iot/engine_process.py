"""The rules engine in a process of its own, driven by the runtime through RulesEngine's own interface.

Why: the engine's MQTT thread reads every device message, and in the runtime it shared one GIL with the Kinesis
action's sender, the event source mapping's shard readers and their lanes. Under load the runtime used at most
three quarters of a core while records waited in the broker (README, benchmark notes). In a child process the
engine has a GIL, and so a core, of its own.

The child is started with multiprocessing's "spawn" (the runtime has threads, which fork must not copy) and
answers the runtime's commands over a pipe: start, status, reload, stop. It ignores SIGINT (a Ctrl-C in the
runtime's terminal reaches the whole process group; the runtime stops the engine in order, letting its Kinesis
action finish what is in flight) and exits on its own when the pipe closes, so a runtime killed outright leaves
no engine behind. A child that dies while the runtime goes on is started again after RESTART_DELAY_S: its
persistent MQTT session kept every unacknowledged message, which the broker then delivers again, so none is lost.
A child whose engine's MQTT thread ended (an exception escaped it) exits, to be started again the same way.
"""

from __future__ import annotations

import logging
import multiprocessing
import signal
import threading
from multiprocessing.connection import Connection
from typing import Any

from localcloud.runtime.iot.engine import RuleLoadError, RulesEngine

log = logging.getLogger(__name__)
START_TIMEOUT_S = 60.0  # the child imports paho and botocore, loads the rules and connects
CALL_TIMEOUT_S = 30.0  # a reload waits up to 10 s for the broker's SUBACKs
STOP_TIMEOUT_S = 30.0  # above RulesEngine.stop's drain timeout
RESTART_DELAY_S = 1.0
WATCH_INTERVAL_S = 1.0  # how often an idle child checks that its engine's MQTT thread runs


class EngineProcessError(RuntimeError):
    """The engine's process did not answer, or failed in a way that is not a rule load error."""


def serve(conn: Connection, engine_args: tuple, engine_kwargs: dict[str, Any]) -> None:
    """The child: run a RulesEngine and answer the runtime's commands until told to stop or the pipe closes."""
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    logging.basicConfig(level=logging.INFO, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    engine = RulesEngine(*engine_args, **engine_kwargs)
    started = _outcome(engine.start)
    conn.send(started)
    if started[0] == "error":  # not running (the broker refused, say): the runtime reports it
        return
    while True:
        try:
            if not conn.poll(WATCH_INTERVAL_S):
                if not engine.mqtt_running:  # the runtime starts a new child, which the broker redelivers to
                    log.error("rules engine: its MQTT thread ended; exiting so that the runtime starts it again")
                    raise SystemExit(1)
                continue
            command = conn.recv()
        except (EOFError, OSError):  # the runtime is gone: stop as its own stop would have
            engine.stop()
            return
        if command == "status":
            conn.send(_outcome(engine.status))
        elif command == "reload":
            conn.send(_outcome(engine.reload))
        elif command == "stop":
            conn.send(_outcome(engine.stop))
            return


def _outcome(call: Any) -> tuple[str, Any]:
    """What a call gave, as the pipe carries it: RuleLoadError keeps its per-rule errors (pickling it would not)."""
    try:
        return "ok", call()
    except RuleLoadError as exc:
        return "rule_load_error", exc.errors
    except Exception as exc:
        log.exception("rules engine: %s failed", getattr(call, "__name__", call))
        return "error", f"{type(exc).__name__}: {exc}"


class RulesEngineProcess:
    """start/stop/reload/status as RulesEngine's, each answered by the engine in its child process."""

    def __init__(self, *engine_args: Any, **engine_kwargs: Any) -> None:
        self._engine_args, self._engine_kwargs = engine_args, engine_kwargs
        self._context = multiprocessing.get_context("spawn")
        self._process: multiprocessing.process.BaseProcess | None = None
        self._conn: Connection | None = None
        self._calls = threading.Lock()  # one command and its answer at a time on the pipe
        self._stopping = threading.Event()

    @property
    def pid(self) -> int | None:
        return self._process.pid if self._process else None

    def start(self) -> None:
        """Start the child and wait until its engine runs; RuleLoadError as RulesEngine.start raises it (the
        good rules run). The child is started again whenever it dies before stop()."""
        with self._calls:
            try:
                self._spawn()
            except RuleLoadError:
                self._supervise_in_background()
                raise
        self._supervise_in_background()

    def stop(self) -> None:
        self._stopping.set()
        with self._calls:
            process, conn = self._process, self._conn
            if process is None or conn is None:
                return
            try:
                conn.send("stop")
                self._answer(STOP_TIMEOUT_S)
            except (EngineProcessError, OSError) as exc:
                log.warning("rules engine process did not stop cleanly (%s): terminating it", exc)
                process.terminate()
            process.join(STOP_TIMEOUT_S)
            conn.close()
            self._conn = None

    def reload(self) -> None:
        self._call("reload")

    def status(self) -> dict[str, Any]:
        try:
            return {**self._call("status"), "pid": self.pid}
        except (EngineProcessError, OSError) as exc:
            return {"connected": False, "pending_records": 0, "load_errors": {}, "rules": {}, "pid": self.pid,
                    "error": str(exc)}  # fmt: skip

    def _call(self, command: str) -> Any:
        with self._calls:
            if self._conn is None:
                raise EngineProcessError("the rules engine process is not running")
            self._conn.send(command)
            return self._answer(CALL_TIMEOUT_S)

    def _answer(self, timeout: float) -> Any:
        assert self._conn is not None
        try:
            if not self._conn.poll(timeout):
                raise EngineProcessError(f"the rules engine process did not answer within {timeout:.0f} s")
            kind, value = self._conn.recv()
        except (EOFError, OSError) as exc:
            raise EngineProcessError(f"the rules engine process exited ({type(exc).__name__})") from exc
        if kind == "rule_load_error":
            raise RuleLoadError(value)
        if kind == "error":
            raise EngineProcessError(value)
        return value

    def _spawn(self) -> None:
        """A new child; returns once its engine started (RuleLoadError too means it runs)."""
        parent, child = self._context.Pipe()
        process = self._context.Process(
            target=serve, args=(child, self._engine_args, self._engine_kwargs), name="rules-engine", daemon=True
        )
        process.start()
        child.close()
        self._process, self._conn = process, parent
        try:
            self._answer(START_TIMEOUT_S)
        except EngineProcessError:
            process.terminate()  # exits by itself after a failed start; not when it hangs
            process.join(STOP_TIMEOUT_S)
            raise

    def _supervise_in_background(self) -> None:
        threading.Thread(target=self._supervise, name="rules-engine-supervisor", daemon=True).start()

    def _supervise(self) -> None:
        """Start the child again whenever it exits before stop() (tried every RESTART_DELAY_S until it runs)."""
        while True:
            assert self._process is not None
            self._process.join()
            if self._stopping.wait(RESTART_DELAY_S):
                return
            with self._calls:
                if self._stopping.is_set():
                    return
                log.error("the rules engine process exited (code %s): starting it again", self._process.exitcode)
                try:
                    self._spawn()
                except RuleLoadError:
                    pass  # the child runs the good rules; status() reports the bad ones
                except (EngineProcessError, OSError):
                    log.exception("the rules engine process could not be started again")
