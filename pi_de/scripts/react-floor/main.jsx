// React's runtime alone (react, react-dom client, scheduler, the JSX runtime): the reference Pi-DE's first
// load is measured against, built by scripts/bundle-size.mjs with the same Vite and React plugin.
import { createRoot } from "react-dom/client";

createRoot(document.getElementById("root")).render(<div>React</div>);
