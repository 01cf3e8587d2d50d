import { status } from '@grpc/grpc-js';
import { FailedPreconditionError, IngotError } from './errors.ts';

/** Errors of images, tasks and agent streams; mapped to statuses in api/status.ts like every IngotError. */

/** The image cannot take an upload now (ACTIVE, or another upload is running). */
export class ImageNotUploadableError extends FailedPreconditionError {
  constructor(image: string, state: string) {
    super(
      'IMAGE_NOT_UPLOADABLE',
      state === 'saving'
        ? `image ${image} is receiving another upload; wait for it to finish`
        : `image ${image} is ${state} and already has its bytes; create another image to upload new ones`,
      { image, status: state },
    );
  }
}

/** The upload's bytes were refused: checksum mismatch, corrupt compressed data, nothing sent. */
export class ImageDataRejectedError extends IngotError {
  constructor(image: string, reason: string, message: string) {
    super(status.INVALID_ARGUMENT, reason, `image ${image}: ${message}`, { metadata: { image } });
  }
}

export class ImageNotActiveError extends FailedPreconditionError {
  constructor(image: string, state: string) {
    super(
      'IMAGE_NOT_ACTIVE',
      `image ${image} is ${state}; only ACTIVE images can be deployed or downloaded`,
      {
        image,
        status: state,
      },
    );
  }
}

export class ImageInUseError extends FailedPreconditionError {
  constructor(image: string, task: string) {
    super('IMAGE_IN_USE', `image ${image} is being deployed by task ${task}; cancel it or wait`, {
      image,
      task,
    });
  }
}

/** A name that matches several visible images (several projects published the same name). */
export class AmbiguousImageError extends IngotError {
  constructor(name: string) {
    super(status.INVALID_ARGUMENT, 'IMAGE_AMBIGUOUS', `several images are named ${name}; use the image id`, {
      metadata: { name },
      violations: [{ field: 'id', description: `several images are named ${name}; use the id` }],
    });
  }
}

export class TaskFinishedError extends FailedPreconditionError {
  constructor(task: string, state: string) {
    super('TASK_FINISHED', `task ${task} already ${state}`, { task, state });
  }
}

/** The deploy's image does not fit the disk the node's agent reported. */
export class ImageTooLargeError extends FailedPreconditionError {
  constructor(image: string, virtualBytes: number, disk: string, diskBytes: number) {
    super(
      'IMAGE_TOO_LARGE',
      `image ${image} needs ${virtualBytes} bytes but ${disk} has ${diskBytes}; choose a larger disk or a smaller image`,
      { image, disk, virtual_size_bytes: String(virtualBytes), disk_size_bytes: String(diskBytes) },
    );
  }
}

/** Another agent holds the node's stream. */
export class AgentAlreadyConnectedError extends IngotError {
  constructor(node: string) {
    super(
      status.ALREADY_EXISTS,
      'AGENT_ALREADY_CONNECTED',
      `another agent is connected for node ${node}; stop it first (its lease lapses three heartbeats after it goes)`,
      { metadata: { node } },
    );
  }
}

/** The controller is stopping; agents reconnect (to it or another controller) and watchers watch again. */
export class ControllerShuttingDownError extends IngotError {
  constructor() {
    super(
      status.UNAVAILABLE,
      'CONTROLLER_SHUTTING_DOWN',
      'the controller is shutting down; reconnect and retry',
    );
  }
}

/** Every port of the controller's capture range is taken by a capture that has not finished. */
export class CapturePortsBusyError extends IngotError {
  constructor(firstPort: number, lastPort: number) {
    super(
      status.RESOURCE_EXHAUSTED,
      'CAPTURE_PORTS_BUSY',
      `every capture port of this controller (${firstPort}-${lastPort}) is in use; retry when a capture finishes, or widen capture.firstPort/lastPort`,
      { metadata: { first_port: String(firstPort), last_port: String(lastPort) } },
    );
  }
}
