import re

# The names of parameters and parameter groups, as runtime/parameter-groups.ts spells them, for the
# torch model's parameter names (model.py): a parameter's name says where it sits,
# `encoder.<m>.*` (`encoder[m]`), `encoder.<m>.last.*` (`encoder[m].last`), `fusion.*`, `head.*`,
# `aux.<m>.*` (`head[m]`), `learnable.<name>[.<m>]`. They are the tfjs names, except that torch
# calls a layer's kernel and a layer norm's gain `weight`, and an RNN's kernels `weight_ih` and
# `weight_hh`. A group is a name prefix, then optional filters after `|`: a layer kind
# (`encoder.audio|conv`) or `weight` (no biases, no norm gains).

# The layer kinds each encoder has, for `encoder[m].<kind>`; a batch-normalised one (`norm: "batch"`)
# also has `norm` layers.
ENCODER_LAYER_KINDS = {
    "mlp": ("last", "dense"),
    "conv1d": ("last", "conv"),
    "conv2d": ("last", "conv"),
    "lstm": ("last", "rnn"),
    "gru": ("last", "rnn"),
    "transformer": ("last", "dense", "attention", "norm"),
    "resnet": ("last", "conv"),
}

HEAD_GROUP = "head"
FUSION_GROUP = "fusion"


def encoder_group(modality):
    """`encoder[m]`: every parameter of modality m's encoder."""
    return f"encoder.{modality}"


def encoder_last_group(modality):
    """`encoder[m].last`: the encoder's last linear layer."""
    return f"{encoder_group(modality)}.last"


def encoder_layers_group(modality, kind):
    """`encoder[m].conv` and the like: every layer of one kind."""
    return f"{encoder_group(modality)}|{kind}"


def aux_head_group(modality):
    """`head[m]`: modality m's auxiliary head."""
    return f"aux.{modality}"


def learnable_param(name, modality=None):
    """The parameter of `learnable name` (`learnable name[m]`: one per modality)."""
    return f"learnable.{name}" if modality is None else f"learnable.{name}.{modality}"


def weights_of(group):
    """`G.weight`: the group's weights without biases and norm gains."""
    return f"{group}|weight"


_CONV = re.compile(r"conv\d*|stem|skip", re.ASCII)
_DENSE = re.compile(r"dense\d*|input|ff\d", re.ASCII)
_ATTENTION = re.compile(r"query|key|value|output|position")
_NORM = re.compile(r"norm\d*", re.ASCII)


def layer_kind(name):
    """The kind of layer a parameter belongs to, from its name: one of ENCODER_LAYER_KINDS' kinds, or "other"."""
    segments = name.split(".")[2:-1]
    if segments[:1] == ["last"]:
        return "last"
    # A batch norm (`<conv>.norm`) is a norm layer, not part of the layer it follows.
    if any(_NORM.fullmatch(s) for s in segments):
        return "norm"
    for kind, pattern in (("conv", _CONV), ("dense", _DENSE)):
        if any(pattern.fullmatch(s) for s in segments):
            return kind
    if segments[:1] == ["rnn"]:
        return "rnn"
    if any(_ATTENTION.fullmatch(s) for s in segments):
        return "attention"
    return "other"


def _is_weight(name):
    """Not a bias and not a norm gain (a layer or batch norm's, which torch calls `weight`)."""
    gain = name.startswith("encoder.") and name.endswith(".weight") and layer_kind(name) == "norm"
    return not gain and not name.endswith((".bias", ".gain"))


def in_group(name, group):
    """Whether parameter `name` belongs to `group`."""
    prefix, *filters = group.split("|")
    if not (name == prefix or name.startswith(f"{prefix}.")):
        return False
    return all(_is_weight(name) if f == "weight" else layer_kind(name) == f for f in filters)


def members_of(names, group):
    """The parameters among `names` that belong to `group`; a group without any is an error."""
    members = [n for n in names if in_group(n, group)]
    if not members:
        raise ValueError(f'parameter group "{group}" has no parameters')
    return members


class Groups:
    """Names of the parameter groups a spec can address, for modality index m."""

    head = HEAD_GROUP
    fusion = FUSION_GROUP
    weights = staticmethod(weights_of)

    def __init__(self, modalities):
        self.modalities = list(modalities)

    def encoder(self, m):
        return encoder_group(self.modalities[m])

    def encoder_last(self, m):
        return encoder_last_group(self.modalities[m])

    def encoder_layers(self, m, kind):
        return encoder_layers_group(self.modalities[m], kind)

    def aux(self, m):
        return aux_head_group(self.modalities[m])

    def learnable(self, name, m=None):
        return learnable_param(name, None if m is None else self.modalities[m])
