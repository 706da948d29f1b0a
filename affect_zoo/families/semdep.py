"""``semdep`` (Xue et al. 2019): one multilabel task, optionally trained in the paper's stages
(``training.phases``), each stage setting its parts trainable and training one output (``models.semdep``)."""
import functools

from affect_zoo import recipes
from affect_zoo.families.base import Family, Stage, register_family
from affect_zoo.models import semdep
from affect_zoo.tasks import as_tasks


@register_family
class SemDep(Family):
    name = "semdep"

    def check(self, recipe):
        mode = self._attention_mode(recipe)
        for i, phase in enumerate(recipe.training.phases or ()):
            if phase.name not in semdep.PHASE_NAMES:
                raise recipes.RecipeError(f"training.phases[{i}].name: unknown phase {phase.name!r}; semdep's "
                                          f"phases are {', '.join(semdep.PHASE_NAMES)}")
            parts = semdep.phase_parts(phase.name, mode)
            if phase.trainable is not None and sorted(phase.trainable) != sorted(parts):
                raise recipes.RecipeError(f"training.phases[{i}].trainable: phase {phase.name!r} trains "
                                          f"{list(parts)}, the recipe says {list(phase.trainable)}")

    def stages(self, recipe, network):
        if not recipe.training.phases:
            return None
        task = as_tasks(recipe.tasks)[0]
        mode = semdep.attention_mode(network)
        rate = float(recipe.training.optimizer.learning_rate)
        return [Stage(name=phase.name, epochs=phase.epochs, learning_rate=float(phase.learning_rate or rate),
                      tasks=tuple(semdep.phase_tasks(task, phase.name, mode)),
                      prepare=functools.partial(semdep.phase_trainable, phase=phase.name),
                      targets=functools.partial(semdep.phase_targets, task_name=task.name, phase=phase.name,
                                                attention=mode))
                for phase in recipe.training.phases]

    @staticmethod
    def _attention_mode(recipe):
        """The recipe's ``model.options.attention`` (default: the paper's "maps"), checked."""
        mode = recipe.model.options.get("attention", "maps")
        if mode not in semdep.ATTENTION_MODES:
            raise recipes.RecipeError(f"model.options.attention: {mode!r} is not one of {semdep.ATTENTION_MODES}")
        return mode
