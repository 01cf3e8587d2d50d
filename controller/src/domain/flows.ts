/**
 * The flows a bare-metal node goes through (an instance's deploy and
 * delete, a capture of its disk), step by step. Pure: no I/O. Every step is idempotent, so a flow interrupted
 * anywhere resumes by running its current step again.
 */

export type FlowKind = 'deploy' | 'delete';
export type StepState = 'running' | 'done' | 'failed';

/** `nova boot`, the seed's twelve steps after the claim. */
export const DEPLOY_STEPS = [
  'service-network',
  'netboot',
  'deploy-task',
  'power-on',
  'deploying',
  'tenant-network',
  'boot-disk',
  'netboot-cleanup',
] as const;

/** Teardown: the reverse, ending with the node back in the pool. */
export const DELETE_STEPS = [
  'cancel-deploy',
  'service-network',
  'netboot',
  'wipe-task',
  'power-on',
  'wiping',
  'power-off',
  'netboot-cleanup',
  'release',
] as const;

export type StepName = (typeof DEPLOY_STEPS)[number] | (typeof DELETE_STEPS)[number];

/**
 * Capturing a node's disk: netboot it on the service network, stream its
 * disk, then put it back as it was (its network, its power).
 */
export const CAPTURE_STEPS = [
  'service-network',
  'netboot',
  'capture-task',
  'power-on',
  'capturing',
  'restore-network',
  'restore-power',
  'netboot-cleanup',
] as const;

export type CaptureStepName = (typeof CAPTURE_STEPS)[number];

export function stepsOf(flow: FlowKind): readonly StepName[] {
  return flow === 'deploy' ? DEPLOY_STEPS : DELETE_STEPS;
}

/** The step to run: the recorded one, or the flow's first when none (or an unknown one) is recorded. */
export function currentStep(flow: FlowKind, recorded: string): StepName {
  const steps = stepsOf(flow);
  return steps.find((s) => s === recorded) ?? (steps[0] as StepName);
}

/** The step after `step`, or undefined when it was the last. */
export function nextStep(flow: FlowKind, step: StepName): StepName | undefined {
  const steps = stepsOf(flow);
  return steps[steps.indexOf(step) + 1];
}

/** The node's provision state while a flow runs, and after it failed. */
export const NODE_STATE_DURING: Record<FlowKind, 'deploying' | 'cleaning'> = {
  deploy: 'deploying',
  delete: 'cleaning',
};
export const NODE_STATE_FAILED: Record<FlowKind, 'deploy failed' | 'clean failed'> = {
  deploy: 'deploy failed',
  delete: 'clean failed',
};

/** Agent task failures a fresh attempt (a power cycle and the task again) may cure. */
export const RETRYABLE_TASK_ERRORS: ReadonlySet<string> = new Set([
  'DOWNLOAD_FAILED',
  'AGENT_ERROR',
  'DIGEST_MISMATCH',
  'SIZE_MISMATCH',
  'DISK_WRITE_FAILED',
  // A capture's stream broke (e.g. the controller receiving it restarted): a new task gets a new port.
  'RECEIVER_FAILED',
]);
