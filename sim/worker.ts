/** A simulation worker thread: runs the seeds it is given and posts each outcome. */
import { parentPort, workerData } from 'node:worker_threads';
import { runSeed, type SeedJob } from './pool.js';

const job = workerData as SeedJob;
void (async () => {
  for (const seed of job.seeds) parentPort?.postMessage(await runSeed(seed, job.peers, job.steps, job.options));
})();
