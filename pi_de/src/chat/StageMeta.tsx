// The line under an agent's title: git branch, the machine only when there are several, and how long
// it has been working or idle. What a person uses, not the port and pid (those stay in the tooltip).
import type { NodeInfo } from "../protocol/types";
import { activityText } from "../model/nodeMeta";
import { SafeText } from "../ui/SafeText";
import { useNow } from "../ui/useNow";

export function StageMeta({ node, several, running, exited }: { node: NodeInfo | undefined; several: boolean; running: boolean; exited: boolean }) {
  const now = useNow();
  if (!node) return null;
  const parts = [];
  if (node.git_branch)
    parts.push(
      <span key="b" data-testid="stage-branch" title="git branch">
        ⎇ <SafeText text={node.git_branch} />
      </span>,
    );
  if (several) parts.push(<SafeText key="m" text={node.machine} />);
  if (!exited) {
    // the open link knows first that a run started; the roster's time follows with the next heartbeat
    const live = running && node.activity !== "working" ? { ...node, activity: "working" as const, activity_since: null } : node;
    parts.push(<span key="a" data-testid="stage-activity">{activityText(live, now)}</span>);
  }
  return (
    <span className="stage-meta" title={`${node.cwd} · ${node.machine}:${node.port} · pid ${node.pid ?? "?"}`}>
      {parts.map((p, i) => (
        <span key={i}>
          {i > 0 && " · "}
          {p}
        </span>
      ))}
    </span>
  );
}
