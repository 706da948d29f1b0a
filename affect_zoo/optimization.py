"""A recipe's optimizer and learning-rate schedule, built for a known number of steps per epoch."""
import keras

from affect_zoo import recipes


def optimizer_from_recipe(training, steps_per_epoch):
    """The recipe's optimizer with its learning-rate schedule (constant, step or cosine, with warm-up)."""
    spec, schedule = training.optimizer, training.schedule
    name, rate, kind, epochs = spec.name, float(spec.learning_rate), schedule.name, training.epochs
    if kind == "step":
        rate = keras.optimizers.schedules.ExponentialDecay(
            rate, decay_steps=max(1, schedule.decay_epochs * steps_per_epoch), decay_rate=schedule.decay_rate,
            staircase=True)
    elif kind == "cosine":
        warmup = schedule.warmup_epochs * steps_per_epoch
        rate = keras.optimizers.schedules.CosineDecay(
            0.0 if warmup else rate, decay_steps=max(1, epochs * steps_per_epoch - warmup),
            warmup_target=rate if warmup else None, warmup_steps=warmup)
    elif kind != "constant":
        raise recipes.RecipeError(f"training.schedule.name: unknown schedule {kind!r} (constant, step, cosine)")
    optimizers = {"sgd": keras.optimizers.SGD, "adam": keras.optimizers.Adam, "adamw": keras.optimizers.AdamW}
    if name not in optimizers:
        raise recipes.RecipeError(f"training.optimizer.name: unknown optimizer {name!r} ({', '.join(optimizers)})")
    extra = {k: getattr(spec, k) for k in ("momentum", "weight_decay") if getattr(spec, k) is not None}
    return optimizers[name](learning_rate=rate, **extra)
