// Which pi events the shim subscribes to, when, and which of its lines wait (pure data, no I/O).

/**
 * pi's events forwarded to the bridge (specs/protocol.md §4.1). Names a pi version does not know never fire there.
 * The same list as `PI_FORWARDED_EVENTS` in pi_socket/protocol.py (a test pins the two together).
 */
export const FORWARDED = [
	"agent_start", "agent_end", "agent_settled", "agent_before_settle",
	"turn_start", "turn_end", "message_start", "message_update", "message_end",
	"tool_execution_start", "tool_execution_update", "tool_execution_end",
	"queue_update", "session_info_changed", "model_select", "thinking_level_select",
	"auto_retry_start", "auto_retry_end", "session_before_compact", "session_compact",
	"session_compact_failed", "compaction_start", "compaction_end", "ui_prompt_start", "ui_prompt_end",
];

/** Events the shim makes itself (`SHIM_EVENT_TYPES` in protocol.py): context usage, sent after each turn_end. */
export const CONTEXT_USAGE = "context_usage";

// While the bridge has no client (most of an agent's life) it needs only what its own state is built from
// (protocol §4.2 "Lean while nobody watches"): the lifecycle, `message_end` (history, tokens, cost), name,
// model. The client-only events are then neither subscribed to (pi awaits every handler of every event, so
// each one costs pi CPU; pi >= 1 can unsubscribe: specs/pi-runtime.md §2, §3) nor sent (pi 0.7x cannot
// unsubscribe: dropped); a client that starts watching gets `init_state` from the bridge's state and every
// event from then on.
/** Subscribed only while watched. message_update has its own handler (deltas.ts); turn_end is pi 0.7x's. */
export const SUBSCRIBED_WHILE_WATCHED = ["message_start", "turn_start", "turn_end", "agent_before_settle", "queue_update"];
/**
 * Subscribed always: the bridge's watchdogs need to know a tool runs and still makes progress (specs/watchdogs.md).
 * While unwatched, start and end go lazily, and an update only as a progress mark at most every TOOL_PROGRESS_MS.
 */
export const TOOL_PROGRESS_MS = 10_000;
/** Sent only while watched. */
export const WATCH_ONLY = new Set([...SUBSCRIBED_WHILE_WATCHED, "message_update", CONTEXT_USAGE]);
/** Written at once even while nobody watches (the roster shows them); other unwatched lines are lazy (outq.ts). */
export const ROSTER_EVENTS = new Set(["agent_start", "agent_end", "agent_settled", "session_info_changed", "model_select"]);
