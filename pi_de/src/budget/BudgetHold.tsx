// Above a held agent's composer (specs/budgets.md): which budget holds it, and the way on: override once, or the
// Budget view to raise it. The bridge refuses prompts (1015) until one of them happens.
import { useState } from "react";
import type { NodeInfo } from "../protocol/types";
import { SafeText } from "../ui/SafeText";

interface Props {
  node: NodeInfo;
  onOverride(nodeId: string): Promise<unknown>;
  onShowBudgets(): void;
}

export function BudgetHold({ node, onOverride, onShowBudgets }: Props) {
  const [busy, setBusy] = useState(false);
  const [error, setError] = useState<string | null>(null);
  const override = () => {
    setBusy(true);
    setError(null);
    onOverride(node.id)
      .catch((e: Error) => setError(e.message))
      .finally(() => setBusy(false));
  };
  return (
    <div className="budget-hold" role="alert" data-testid="budget-hold">
      <span>
        <strong>Budget reached:</strong> <SafeText text={node.budget_note ?? "a budget"} />. Its runs are stopped and prompts held until the budget is raised or you override
        it once.
      </span>
      <span className="budget-hold-actions">
        <button type="button" className="btn btn-primary" data-testid="budget-override" disabled={busy} onClick={override}>
          Override once
        </button>
        <button type="button" className="btn" onClick={onShowBudgets}>
          Budgets
        </button>
      </span>
      {error && <span className="budget-error">{error}</span>}
    </div>
  );
}
