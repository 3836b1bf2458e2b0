#include <vector>

#include "caffe/layers/generative_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// One thread per class column: online (single-pass, max-rescaled)
// log-sum-exp down the batch over the rows that are not ignored. Threads of a
// warp read neighbouring columns of one row, so the loads coalesce.
template <typename Dtype>
__global__ void GenerativeColumnLogSumExp(const int num, const int classes,
    const Dtype* score, const Dtype* target, const int ignored, Dtype* lse) {
  CUDA_KERNEL_LOOP(c, classes) {
    Dtype running_max = -INFINITY;
    Dtype running_sum = 0;
    for (int j = 0; j < num; ++j) {
      if (static_cast<int>(target[j]) == ignored) { continue; }
      const Dtype x = score[j * classes + c];
      if (x > running_max) {
        running_sum = running_sum * exp(running_max - x) + Dtype(1);
        running_max = x;
      } else {
        running_sum += exp(x - running_max);
      }
    }
    lse[c] = running_max + log(running_sum);
  }
}

// One thread per score: W[j, c] = exp(F[j, c] - lse_c), 0 on ignored rows.
template <typename Dtype>
__global__ void GenerativeWeights(const int count, const int classes,
    const Dtype* score, const Dtype* target, const Dtype* lse,
    const int ignored, Dtype* weights) {
  CUDA_KERNEL_LOOP(index, count) {
    const int j = index / classes;
    weights[index] = static_cast<int>(target[j]) == ignored ? Dtype(0) :
        exp(score[index] - lse[index % classes]);
  }
}

// One thread per example: picks the arg-max class of unlabelled examples and
// writes each example's (lambda-weighted) log p_y term.
template <typename Dtype>
__global__ void GenerativeRowTerms(const int num, const int classes,
    const Dtype* score, const Dtype* lse, const Dtype* log_prior,
    const Dtype log_kept, const Dtype unlabeled_weight, const int ignored,
    const int pending, Dtype* target, Dtype* term) {
  CUDA_KERNEL_LOOP(j, num) {
    const int t = static_cast<int>(target[j]);
    const Dtype* row = score + j * classes;
    if (t == ignored) {
      term[j] = 0;
    } else if (t == pending) {
      int best = 0;
      Dtype best_value = row[0] - lse[0] + log_prior[0];
      for (int c = 1; c < classes; ++c) {
        const Dtype value = row[c] - lse[c] + log_prior[c];
        if (value > best_value) { best_value = value; best = c; }
      }
      target[j] = best;
      term[j] = unlabeled_weight * (best_value + log_kept);
    } else {
      term[j] = row[t] - lse[t] + log_kept;
    }
  }
}

// Weight of example j's own target in its column: lambda if unlabelled.
template <typename Dtype>
__device__ inline Dtype GenerativeTargetWeight(const Dtype label,
    const bool semi_supervised, const int unlabeled_label,
    const Dtype unlabeled_weight) {
  return (semi_supervised && static_cast<int>(label) == unlabeled_label) ?
      unlabeled_weight : Dtype(1);
}

// One thread per column: m_c = sum_j t[j, c], and sum_j W[j, c]^2 for ESS.
template <typename Dtype>
__global__ void GenerativeColumnMass(const int num, const int classes,
    const Dtype* weights, const Dtype* label, const Dtype* target,
    const bool semi_supervised, const int unlabeled_label,
    const Dtype unlabeled_weight, const bool want_w2,
    Dtype* mass, Dtype* w2) {
  CUDA_KERNEL_LOOP(c, classes) {
    Dtype column_mass = 0;
    Dtype column_w2 = 0;
    for (int j = 0; j < num; ++j) {
      if (static_cast<int>(target[j]) == c) {
        column_mass += GenerativeTargetWeight(label[j], semi_supervised,
            unlabeled_label, unlabeled_weight);
      }
      if (want_w2) {
        const Dtype w = weights[j * classes + c];
        column_w2 += w * w;
      }
    }
    mass[c] = column_mass;
    w2[c] = column_w2;
  }
}

// One thread per score: dF[j, c] = scale * (m_c W[j, c] - t[j, c]).
// Ignored rows have W = 0 and target -1, so their gradient is 0.
template <typename Dtype>
__global__ void GenerativeBackward(const int count, const int classes,
    const Dtype* weights, const Dtype* label, const Dtype* target,
    const Dtype* mass, const bool semi_supervised, const int unlabeled_label,
    const Dtype unlabeled_weight, const Dtype scale, Dtype* diff) {
  CUDA_KERNEL_LOOP(index, count) {
    const int j = index / classes;
    const int c = index % classes;
    Dtype g = mass[c] * weights[index];
    if (static_cast<int>(target[j]) == c) {
      g -= GenerativeTargetWeight(label[j], semi_supervised,
          unlabeled_label, unlabeled_weight);
    }
    diff[index] = scale * g;
  }
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::Forward_gpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  // Labels are checked on the host (N values) so that a bad label stops
  // training with a message instead of reading out of bounds on the device.
  kept_count_ = ClassifyExamples(bottom[1]->cpu_data(),
                                 target_class_.mutable_cpu_data());
  if (kept_count_ == 0) {
    caffe_gpu_set(num_ * classes_, Dtype(0), weights_.mutable_gpu_data());
    caffe_gpu_set(classes_, Dtype(0), column_lse_.mutable_gpu_data());
    caffe_gpu_set(classes_, Dtype(0), column_mass_.mutable_gpu_data());
    for (int i = 0; i < top.size(); ++i) { top[i]->mutable_cpu_data()[0] = 0; }
    return;
  }
  const Dtype* score = bottom[0]->gpu_data();
  Dtype* target = target_class_.mutable_gpu_data();
  Dtype* lse = column_lse_.mutable_gpu_data();
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeColumnLogSumExp<Dtype><<<CAFFE_GET_BLOCKS(classes_),
      CAFFE_CUDA_NUM_THREADS>>>(num_, classes_, score, target, kIgnored, lse);
  CUDA_POST_KERNEL_CHECK;
  CheckColumnsFinite(column_lse_.cpu_data());
  const int count = num_ * classes_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeWeights<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, classes_, score, target,
      column_lse_.gpu_data(), kIgnored, weights_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;

  const Dtype log_kept = log(static_cast<Dtype>(kept_count_));
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeRowTerms<Dtype><<<CAFFE_GET_BLOCKS(num_),
      CAFFE_CUDA_NUM_THREADS>>>(num_, classes_, score, column_lse_.gpu_data(),
      log_prior_.gpu_data(), log_kept, unlabeled_weight_, kIgnored,
      kUnlabeledPending, target, row_term_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  Dtype objective;
  caffe_gpu_dot(num_, row_term_.gpu_data(), ones_.gpu_data(), &objective);
  top[0]->mutable_cpu_data()[0] = -objective / get_normalizer(kept_count_);

  const bool want_w2 = top.size() >= 2;
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeColumnMass<Dtype><<<CAFFE_GET_BLOCKS(classes_),
      CAFFE_CUDA_NUM_THREADS>>>(num_, classes_, weights_.gpu_data(),
      bottom[1]->gpu_data(), target_class_.gpu_data(), semi_supervised_,
      unlabeled_label_, unlabeled_weight_, want_w2,
      column_mass_.mutable_gpu_data(), column_w2_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  if (want_w2) {
    WriteEss(column_w2_.cpu_data(), column_mass_.cpu_data(), top);
  }
  if (top.size() >= 3) {  // diagnostics: computed on the host, as on the CPU
    WriteWithinClassDiagnostics(weights_.cpu_data(), target_class_.cpu_data(),
                                top);
  }
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::Backward_gpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[1]) {
    LOG(FATAL) << this->type()
               << " Layer cannot backpropagate to label inputs.";
  }
  if (!propagate_down[0]) { return; }
  const int count = bottom[0]->count();
  const Dtype scale = top[0]->cpu_diff()[0] / get_normalizer(kept_count_);
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeBackward<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, classes_, weights_.gpu_data(),
      bottom[1]->gpu_data(), target_class_.gpu_data(), column_mass_.gpu_data(),
      semi_supervised_, unlabeled_label_, unlabeled_weight_, scale,
      bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(GenerativeLossLayer);

}  // namespace caffe
