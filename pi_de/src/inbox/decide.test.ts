import { describe, expect, it, vi } from "vitest";
import { RpcError } from "../connection/rpc";
import { decideApproval } from "./decide";

const d = { node_id: "n1", approval_id: "a1", decision: "allow" as const };

describe("decideApproval", () => {
  it("decides through the registry and does not open a link", async () => {
    const request = vi.fn().mockResolvedValue({ status: "accepted" });
    const link = vi.fn();
    await decideApproval(request, d, link);
    expect(request).toHaveBeenCalledWith("decide_approval", d, 15_000);
    expect(link).not.toHaveBeenCalled();
  });

  it("falls back to the agent link for an older hypivisor or an older bridge", async () => {
    for (const code of [-32601, 1014]) {
      const link = vi.fn().mockResolvedValue(undefined);
      await decideApproval(vi.fn().mockRejectedValue(new RpcError(code, "no")), d, link);
      expect(link).toHaveBeenCalledTimes(1);
    }
  });

  it("says who won a conflict, and passes other errors on without a second try", async () => {
    const link = vi.fn();
    await expect(decideApproval(vi.fn().mockRejectedValue(new RpcError(1013, "already decided (deny by bob on hv-1)")), d, link)).rejects.toMatchObject({
      code: 1013,
      message: "already decided (deny by bob on hv-1)",
    });
    await expect(decideApproval(vi.fn().mockRejectedValue(new RpcError(1012, "agent gone")), d, link)).rejects.toMatchObject({ code: 1012 });
    expect(link).not.toHaveBeenCalled();
  });
});
