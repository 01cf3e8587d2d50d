import { type FieldViolation, InvalidArgumentError } from './errors.ts';

/**
 * Collects every problem of a request before failing, so a caller sees all
 * invalid fields at once instead of fixing them one round-trip at a time.
 */
export class Violations {
  readonly #list: FieldViolation[] = [];

  add(field: string, description: string): void {
    this.#list.push({ field, description });
  }

  get empty(): boolean {
    return this.#list.length === 0;
  }

  /** Throws InvalidArgumentError carrying every violation, if there is any. */
  throwIfAny(): void {
    if (this.#list.length > 0) throw new InvalidArgumentError(this.#list);
  }
}
