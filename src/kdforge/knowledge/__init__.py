"""Knowledge extracted from a teacher for the student to use: RetriKT's generative source.

RetriKT (arXiv 2310.15594) has a causal-LM teacher write labelled samples after soft prompt
tuning (step 1) and PPO on the soft prompt (step 2); the teacher labels them itself.
"""

from kdforge.knowledge.checkpoints import PromptCheckpoints
from kdforge.knowledge.generative import GeneratedKnowledge, GenerativeSettings, extract_knowledge, teacher_probs
from kdforge.knowledge.ppo import clipped_surrogate, ppo_refine, whiten
from kdforge.knowledge.prompt_tuning import prompt_embedding, prompt_loss, tune_prompt
from kdforge.knowledge.reward import confidence_reward, jaccard, ngrams, novelty, reward
from kdforge.knowledge.sampling import Rollout, cut_sample, generate_samples, sample_rollouts, sequence_logprobs
from kdforge.knowledge.verbalizer import SEPARATOR, label_token_ids, lm_label_probs

__all__ = [
    "SEPARATOR",
    "GenerativeSettings",
    "GeneratedKnowledge",
    "PromptCheckpoints",
    "Rollout",
    "clipped_surrogate",
    "confidence_reward",
    "cut_sample",
    "extract_knowledge",
    "generate_samples",
    "jaccard",
    "label_token_ids",
    "lm_label_probs",
    "ngrams",
    "novelty",
    "ppo_refine",
    "prompt_embedding",
    "prompt_loss",
    "reward",
    "sample_rollouts",
    "sequence_logprobs",
    "teacher_probs",
    "tune_prompt",
    "whiten",
]
