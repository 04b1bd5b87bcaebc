import { useState } from "react";
import { SafeText } from "../ui/SafeText";

/** The session name is pi's own (set_session_name); editing it here renames the pi session. */
export function SessionName({ name, disabled, onRename }: { name: string | null; disabled: boolean; onRename(n: string): void }) {
  const [editing, setEditing] = useState(false);
  const [draft, setDraft] = useState("");
  if (editing)
    return (
      <form
        className="session-form"
        onSubmit={(e) => {
          e.preventDefault();
          const n = draft.trim();
          if (n) onRename(n);
          setEditing(false);
        }}
      >
        <input autoFocus aria-label="Session name" value={draft} maxLength={200} onChange={(e) => setDraft(e.target.value)} onBlur={() => setEditing(false)} onKeyDown={(e) => e.key === "Escape" && setEditing(false)} />
      </form>
    );
  return (
    <button
      type="button"
      className="session-name"
      disabled={disabled}
      title="Rename this pi session"
      onClick={() => {
        setDraft(name ?? "");
        setEditing(true);
      }}
    >
      {name ? <SafeText text={name} /> : "unnamed session"} ✎
    </button>
  );
}
