"""The special tokens every tokenizer trained here starts with, in this order, so their ids are the same for all:

    0 <pad>   1 <unk>   2 <bos>   3 <eos>   4 <cls>

They are the defaults wherever a model's config names no id of its own (`TransformerConfig.pad_id`, `bos_id`,
`eos_id`); a pretrained model's tokenizer has its own (see `data.tokenizer.KNOWN_SPECIALS`).
"""

__all__ = ["BOS_ID", "CLS_ID", "EOS_ID", "PAD_ID", "SPECIAL_TOKENS", "UNK_ID"]


SPECIAL_TOKENS = ("<pad>", "<unk>", "<bos>", "<eos>", "<cls>")
PAD_ID, UNK_ID, BOS_ID, EOS_ID, CLS_ID = range(len(SPECIAL_TOKENS))
