/**
 * `Symbol.asyncDispose`, for `await using engine = createEngine(...)`.
 * Node 20 and later define it; elsewhere it is set here to
 * `Symbol.for('Symbol.asyncDispose')`, as TypeScript's documentation of
 * `using` declarations advises, so that objects made here and a downlevelled
 * `await using` agree on the key. Imported for that effect before any class
 * that has the method is defined.
 */
const symbols = Symbol as unknown as { asyncDispose?: symbol; dispose?: symbol };
symbols.asyncDispose ??= Symbol.for('Symbol.asyncDispose');
symbols.dispose ??= Symbol.for('Symbol.dispose');

export {};
