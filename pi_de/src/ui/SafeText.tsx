// A name from outside, shown inertly: hidden characters become visible (displayText), and <bdi>
// isolates the name so right-to-left letters in it never reorder the text around it.
import { displayText, hasHiddenChars } from "../model/displayText";

export function SafeText({ text, className }: { text: string | null | undefined; className?: string }) {
  const hidden = hasHiddenChars(text);
  return (
    <bdi className={hidden ? `${className ?? ""} has-hidden`.trim() : className} title={hidden ? "contains hidden characters, shown as \\uXXXX or ↵" : undefined}>
      {displayText(text)}
    </bdi>
  );
}
