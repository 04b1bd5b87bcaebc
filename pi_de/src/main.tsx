import { createRoot } from "react-dom/client";
import { App } from "./App";
import "./styles.css";

// No StrictMode: its double-mounted effects open every WebSocket twice in dev, which made an
// earlier dashboard race its own connections.
createRoot(document.getElementById("root")!).render(<App />);
