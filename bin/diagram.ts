/**
 * `peerline diagram [--out dir]`: writes the peer connection machine as
 * `diagram.svg` and `diagram.mmd` (Mermaid stateDiagram-v2), both generated
 * from the machine definition. `npx tsx bin/diagram.ts [dir]` does the same.
 */
import { mkdir, writeFile } from 'node:fs/promises';
import { join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import { diagramSources } from '../visualizer/diagram.js';

export interface DiagramFiles {
  readonly svg: string;
  readonly mermaid: string;
}

/** Writes `diagram.svg` and `diagram.mmd` into `dir` (created if missing); returns their paths. */
export async function writeDiagram(dir = 'docs'): Promise<DiagramFiles> {
  const sources = await diagramSources();
  await mkdir(dir, { recursive: true });
  const svg = join(dir, 'diagram.svg');
  const mermaid = join(dir, 'diagram.mmd');
  await writeFile(svg, sources.svg);
  await writeFile(mermaid, sources.mermaid);
  return { svg, mermaid };
}

if (process.argv[1] !== undefined && import.meta.url === pathToFileURL(resolve(process.argv[1])).href) {
  writeDiagram(process.argv[2] ?? 'docs').then(
    (files) => process.stdout.write(`wrote ${files.svg} and ${files.mermaid}\n`),
    (error: unknown) => {
      process.stderr.write(`peerline diagram: ${error instanceof Error ? error.message : String(error)}\n`);
      process.exitCode = 1;
    },
  );
}
