import type { ComponentChildren } from "preact";
import { useEffect, useRef } from "preact/hooks";
import { useT } from "./i18n";
import { Chart, type ChartConfiguration } from "./charts";

export function ErrorNote({ message }: { message: string | null }) {
  return message ? (
    <p class="error" role="alert">
      {message}
    </p>
  ) : null;
}

export function Section({ title, children, id }: { title: string; children: ComponentChildren; id?: string }) {
  return (
    <section class="card" aria-labelledby={id}>
      <h2 id={id}>{title}</h2>
      {children}
    </section>
  );
}

export const PAGE = 20;

export function Pager({ offset, total, onPage }: { offset: number; total: number; onPage: (offset: number) => void }) {
  const t = useT();
  if (total === 0) return null;
  return (
    <nav class="pager" aria-label="pages">
      <button type="button" disabled={offset === 0} onClick={() => onPage(Math.max(0, offset - PAGE))}>
        {t("previous")}
      </button>
      <span>{t("pageOf", { from: offset + 1, to: Math.min(offset + PAGE, total), total })}</span>
      <button type="button" disabled={offset + PAGE >= total} onClick={() => onPage(offset + PAGE)}>
        {t("next")}
      </button>
    </nav>
  );
}

/** A chart with its words: the canvas is labelled, and the same figures follow as a table for readers. */
export function ChartBox({ config, label }: { config: ChartConfiguration; label: string }) {
  const canvas = useRef<HTMLCanvasElement>(null);
  useEffect(() => {
    if (!canvas.current) return;
    const chart = new Chart(canvas.current, config);
    return () => chart.destroy();
  }, [JSON.stringify(config.data), label]);
  return (
    <div class="chart">
      <canvas ref={canvas} role="img" aria-label={label} />
    </div>
  );
}
