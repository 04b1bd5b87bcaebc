import { createRoot } from "react-dom/client";
import { App } from "./App";
import { adoptUrlToken } from "./connection/token";
// Base first, the phone layout last: its media query overrides the feature styles.
import "./styles/base.css";
import "./roster/roster.css";
import "./chat/chat.css";
import "./chat/approvals.css";
import "./inspector/inspector.css";
import "./spawn/spawn.css";
import "./styles/mobile.css";

// The first-start link's `#token=…` is stored and leaves the address bar before anything reads the URL.
adoptUrlToken(window.location, window.history);

// No StrictMode: its double-mounted effects open every WebSocket twice in dev, which made an
// earlier dashboard race its own connections.
createRoot(document.getElementById("root")!).render(<App />);
