"""The local MQTT broker: mosquitto 2.0 (OS package) with a config we write, bound to one host only.

MQTT 3.1.1 and 5 on one listener, anonymous clients allowed (it listens on 127.0.0.1), persistence in the state
dir so QoS 1 messages queued for a persistent session (the rules engine's) survive a broker restart.
mosquitto saves its in-memory state on a clean shutdown (SIGTERM) and every `autosave_interval` seconds.

QoS: IoT Core supports QoS 0 and 1 only ("AWS IoT Core does not support publishing or subscribing with QoS level 2",
https://docs.aws.amazon.com/iot/latest/developerguide/mqtt.html#mqtt-differences). `max_qos 1` makes mosquitto
match as closely as it can: MQTT 5 clients see Maximum QoS 1 in the CONNACK, and a QoS 2 PUBLISH is never
acknowledged nor delivered: mosquitto closes the connection (MQTT 5: DISCONNECT 0x9B "QoS not supported"). A QoS 2
SUBSCRIBE is granted QoS 1, where IoT Core sends no SUBACK at all.

Who published: mosquitto does not tell subscribers which client published a message. When gcc and the mosquitto
headers (`apt-get install mosquitto-dev libmosquitto-dev`) exist, we build a tiny plugin (plugin API v5,
MOSQ_EVT_MESSAGE) that appends MQTT 5 user properties to every message: the publisher's client id
(`CLIENT_ID_PROPERTY`, for clientid()), its address (`SOURCE_IP_PROPERTY`, sourceip()) and, when it gave one, its
username (`USERNAME_PROPERTY`, principal()). The rules engine reads the last of each (a publisher cannot override
them: the broker's come last) and hides every `BROKER_PROPERTY_PREFIX` property from get_user_properties(). The
publish's own MQTT 5 properties (content type, payload format, response topic, correlation data, user properties)
reach the engine unchanged: mosquitto forwards them to MQTT 5 subscribers itself. Without the plugin those three
functions are Undefined.

As root, mosquitto drops privileges to the `mosquitto` user, which then owns only the data folder inside the state
dir (its parent folders must be searchable by it, which /tmp and the repository are); the state dir, the config and
the plugin stay root's.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import stat
import subprocess
from pathlib import Path

from localcloud.servers.procs import StartError, terminate_group, wait_for_port

BROKER_PROPERTY_PREFIX = "x-iotkpi-"
CLIENT_ID_PROPERTY = BROKER_PROPERTY_PREFIX + "clientid"
SOURCE_IP_PROPERTY = BROKER_PROPERTY_PREFIX + "sourceip"
USERNAME_PROPERTY = BROKER_PROPERTY_PREFIX + "username"
RUN_USER = "mosquitto"

_PLUGIN_SOURCE = (
    r"""
#include <stddef.h>
#include <mosquitto.h>
#include <mosquitto_broker.h>
#include <mosquitto_plugin.h>
#ifndef MQTT_PROP_USER_PROPERTY
#define MQTT_PROP_USER_PROPERTY 38
#endif
static mosquitto_plugin_id_t *plugin_id;
static int add(mosquitto_property **properties, const char *name, const char *value) {
    if (value == NULL) return MOSQ_ERR_SUCCESS;
    return mosquitto_property_add_string_pair(properties, MQTT_PROP_USER_PROPERTY, name, value);
}
static int on_message(int event, void *event_data, void *userdata) {
    struct mosquitto_evt_message *ed = event_data;
    int rc;
    (void)event; (void)userdata;
    rc = add(&ed->properties, "@CLIENT_ID@", mosquitto_client_id(ed->client));
    if (rc == MOSQ_ERR_SUCCESS) rc = add(&ed->properties, "@SOURCE_IP@", mosquitto_client_address(ed->client));
    if (rc == MOSQ_ERR_SUCCESS) rc = add(&ed->properties, "@USERNAME@", mosquitto_client_username(ed->client));
    return rc;
}
int mosquitto_plugin_version(int count, const int *versions) {
    for (int i = 0; i < count; i++) if (versions[i] == 5) return 5;
    return -1;
}
int mosquitto_plugin_init(mosquitto_plugin_id_t *identifier, void **userdata, struct mosquitto_opt *opts, int n) {
    (void)userdata; (void)opts; (void)n;
    plugin_id = identifier;
    return mosquitto_callback_register(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL, NULL);
}
int mosquitto_plugin_cleanup(void *userdata, struct mosquitto_opt *opts, int n) {
    (void)userdata; (void)opts; (void)n;
    return mosquitto_callback_unregister(plugin_id, MOSQ_EVT_MESSAGE, on_message, NULL);
}
""".replace("@CLIENT_ID@", CLIENT_ID_PROPERTY)
    .replace("@SOURCE_IP@", SOURCE_IP_PROPERTY)
    .replace("@USERNAME@", USERNAME_PROPERTY)
)


def find_mosquitto() -> str:
    found = os.environ.get("MOSQUITTO_BIN") or shutil.which("mosquitto") or "/usr/sbin/mosquitto"
    if not Path(found).is_file():
        raise StartError("mosquitto not found: apt-get install mosquitto (or set MOSQUITTO_BIN)")
    return found


class MosquittoBroker:
    """One broker whose config, persistence and plugin live in `state_dir`."""

    def __init__(self, state_dir: Path, host: str = "127.0.0.1", port: int = 1883) -> None:
        self.state_dir = state_dir
        self.host = host
        self.port = port
        self.config_file = state_dir / "mosquitto.conf"
        self.data_dir = state_dir / "data"
        self.plugin_file = state_dir / "clientid_plugin.so"
        self._proc: subprocess.Popen | None = None

    @property
    def url(self) -> str:
        return f"mqtt://{self.host}:{self.port}"

    def build_plugin(self) -> bool:
        """Compile the publisher plugin (again when its source changed); False (clientid(), sourceip() and
        principal() stay Undefined) if we cannot."""
        source = self.state_dir / "clientid_plugin.c"
        if self.plugin_file.exists() and source.exists() and source.read_text() == _PLUGIN_SOURCE:
            return True
        gcc = shutil.which("gcc")
        if gcc is None or not Path("/usr/include/mosquitto_broker.h").exists():
            return False
        source.write_text(_PLUGIN_SOURCE)
        built = subprocess.run(
            [gcc, "-shared", "-fPIC", "-O2", "-o", str(self.plugin_file), str(source)], capture_output=True
        )
        return built.returncode == 0

    def prepare(self) -> None:
        """Write the config (and build the plugin); as root, hand the data folder (only) to the run user."""
        self._own_folders(self.run_user())
        lines = [
            f"listener {self.port} {self.host}",
            "max_qos 1",  # IoT Core supports QoS 0 and 1 only (see the module docstring)
            "allow_anonymous true",
            "persistence true",
            f"persistence_location {self.data_dir}/",
            "autosave_interval 10",
            # The rules engine's session may be offline for a while at 1,000 msg/s: keep its queue.
            "max_queued_messages 1000000",
            "set_tcp_nodelay true",
            "log_dest stdout",
            "log_type error",
            "log_type warning",
            "log_type notice",
            "connection_messages false",
        ]
        if self.build_plugin():
            lines.append(f"plugin {self.plugin_file}")
        run_user = self.run_user()
        if run_user:
            lines.append(f"user {run_user}")
        self.config_file.write_text("\n".join(lines) + "\n")

    def _own_folders(self, run_user: str | None) -> None:
        """The state dir (config, plugin) is ours and readable, the data folder the run user's and private.

        Whatever the run user planted must not make us (root) write, chown or load something else: everything
        happens through descriptors opened without following symlinks, the state dir becomes ours before its
        entries are touched (an earlier layout gave it to the run user), and entries there that are neither
        our own regular files nor the data folder are removed."""
        self.state_dir.mkdir(mode=0o755, parents=True, exist_ok=True)
        folder = os.open(self.state_dir, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW)
        try:
            if os.geteuid() == 0:
                os.fchown(folder, 0, 0)
            os.fchmod(folder, 0o755)
            for name in os.listdir(folder):
                found = os.stat(name, dir_fd=folder, follow_symlinks=False)
                if name == self.data_dir.name and stat.S_ISDIR(found.st_mode):
                    continue
                if not stat.S_ISREG(found.st_mode) or found.st_uid != os.geteuid():
                    if stat.S_ISDIR(found.st_mode):
                        raise StartError(f"{self.state_dir / name} is not ours: remove it")
                    os.unlink(name, dir_fd=folder)
            with contextlib.suppress(FileExistsError):
                os.mkdir(self.data_dir.name, 0o700, dir_fd=folder)
            data = os.open(self.data_dir.name, os.O_RDONLY | os.O_DIRECTORY | os.O_NOFOLLOW, dir_fd=folder)
            try:
                if run_user and run_user != "root":
                    account = pwd.getpwnam(run_user)
                    os.fchown(data, account.pw_uid, account.pw_gid)
                    for name in os.listdir(data):  # a persistence file a root-run broker wrote
                        os.chown(name, account.pw_uid, account.pw_gid, dir_fd=data, follow_symlinks=False)
                os.fchmod(data, 0o700)
            finally:
                os.close(data)
            if not os.path.samestat(os.fstat(folder), os.lstat(self.state_dir)):
                raise StartError(f"{self.state_dir} was replaced while it was being prepared")
        finally:
            os.close(folder)

    @staticmethod
    def run_user() -> str | None:
        if os.geteuid() != 0:
            return None
        try:
            pwd.getpwnam(RUN_USER)
        except KeyError:
            # No unprivileged account to drop to (mosquitto refuses to start with a missing `user`): stay root.
            return "root"
        return RUN_USER

    @property
    def has_clientid_plugin(self) -> bool:
        return f"plugin {self.plugin_file}" in self.config_file.read_text()

    def argv(self) -> list[str]:
        return [find_mosquitto(), "-c", str(self.config_file)]

    def start(self, timeout: float = 15.0, log_file: Path | None = None) -> int:
        """Start in the foreground of this process's control (tests, `localcloud up` uses argv()); return pid."""
        self.prepare()
        log = (log_file or self.state_dir / "mosquitto.log").open("ab")
        with log:
            self._proc = subprocess.Popen(
                self.argv(), stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT, start_new_session=True
            )
        wait_for_port(self.host, self.port, timeout, proc=self._proc)
        return self._proc.pid

    def stop(self, timeout: float = 10.0) -> None:
        """SIGTERM the broker we started (it saves its persistence file), SIGKILL after `timeout`."""
        if self._proc is None:
            return
        terminate_group(self._proc.pid, timeout)
        with contextlib.suppress(subprocess.TimeoutExpired):
            self._proc.wait(timeout=timeout)
        self._proc = None
