/* Model checkpoints: safetensors files whose tensors carry the reference's state_dict names
 * (PyTorch users read them with safetensors.torch.load_file and load_state_dict), with the run's
 * configuration and the format version in the metadata. Written atomically. */
#ifndef TIMIREC_CHECKPOINT_H
#define TIMIREC_CHECKPOINT_H

#include <stddef.h>

#include "timirec/model.h"

#ifdef __cplusplus
extern "C" {
#endif

#define CHECKPOINT_FORMAT "timirec-checkpoint-1"

/* Write every tensor of the layout (F32, shapes as the table says); config_json goes into the
 * metadata as "config". Creates the parent folder. Returns 0 or -1 with a message. */
int checkpoint_save(const char *path, const model_layout_t *lay, const float *params,
                    const char *config_json, char *err, size_t errlen);

/* Load tensors into params. strict: the file must hold exactly the layout's tensors (as
 * PyTorch's strict load_state_dict). Otherwise every tensor the two share by name is loaded and
 * the rest are left alone (the finetune stage loading the pretrained extractor). A shared name
 * with another dtype or shape is an error naming the tensor and both shapes. *n_loaded (may be
 * NULL) gets the number of tensors loaded. Returns 0 or -1 with a message. */
int checkpoint_load(const char *path, const model_layout_t *lay, float *params, int strict,
                    int *n_loaded, char *err, size_t errlen);

#ifdef __cplusplus
}
#endif
#endif
