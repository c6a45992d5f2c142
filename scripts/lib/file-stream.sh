# Shared by the opt-in box checks (cross-aarch64.sh, deb.sh): one monitor config that runs a
# recording to its end into a file sink, and the check that an alarm came out of it.
# Source it; it defines functions only.

# file_stream_toml STATE_DIR STREAM MODEL WAV EVENTS: a monitor config on stdout (no console).
file_stream_toml() {
    cat <<TOML
[server]
listen = ""

[state]
dir = "$1"

[[stream]]
name = "$2"
model = "$3"
source = { type = "file", path = "$4", realtime = false }
detect = { threshold = "model", on_delay_s = 3.0, off_delay_s = 5.0 }

[[sink]]
type = "file"
path = "$5"
TOML
}

# event_kinds EVENTS_JSONL: the kinds of the events in order, space-separated.
event_kinds() {
    python3 -c 'import json,sys; print(" ".join(json.loads(l)["kind"] for l in open(sys.argv[1])))' "$1"
}

# require_raised WHO KINDS: fails, naming WHO, unless an alarm was raised.
require_raised() {
    case " $2 " in *" raised "*) ;; *) echo "$1: no alarm raised on the faulty pump (events: $2)" >&2; return 1;; esac
}
