#include <vector>

#include "caffe/layers/generative_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

// The forward pass runs on the device from the labels to the last per-class
// sum; the host waits once, for one copy of summary_ (the layout is in the
// header), and then checks labels and finiteness and writes the tops. The
// column reductions are tiled: a block covers kTileColumns neighbouring
// columns with kTileRows threads down each, so the loads of a row coalesce
// and N rows are shared by kTileRows threads instead of walked by one.
// Every sum is a fixed tree, so a run repeats bit for bit.
const int kTileColumns = 32;
const int kTileRows = 16;
const int kRowBlock = 512;  // threads of the single-block row kernels

// Fixed-order sum over a block's threads of kTileRows partials per column.
template <typename Dtype>
__device__ void SumDownTile(Dtype (*partial)[kTileColumns]) {
  for (int stride = kTileRows / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (threadIdx.y < stride) {
      partial[threadIdx.y][threadIdx.x] +=
          partial[threadIdx.y + stride][threadIdx.x];
    }
  }
  __syncthreads();
}

// Fixed-order sum over the threads of a one-dimensional block.
template <typename Dtype>
__device__ Dtype SumOverBlock(Dtype value, Dtype* shared) {
  shared[threadIdx.x] = value;
  for (int stride = blockDim.x / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (threadIdx.x < stride) { shared[threadIdx.x] += shared[threadIdx.x + stride]; }
  }
  __syncthreads();
  return shared[0];
}

// One block: each example becomes labelled (its class), unlabelled
// (pending) or ignored, with the rules of ClassifyExamples. A bad label
// (not an integer, or outside [0, C) and not a code) marks its example
// ignored, so that nothing reads out of bounds, and the first such example
// goes to summary[kFirstBadLabel]; the host then stops with
// ClassifyExamples' own message. summary[kKept] = M.
template <typename Dtype>
__global__ void GenerativeClassify(const int num, const int classes,
    const Dtype* label, const bool has_ignore_label, const int ignore_label,
    const bool semi_supervised, const int unlabeled_label, const int ignored,
    const int pending, Dtype* target, Dtype* summary, const int kept_field,
    const int bad_field) {
  __shared__ int first_bad;
  __shared__ int kept[kRowBlock];
  if (threadIdx.x == 0) { first_bad = num; }
  __syncthreads();
  int my_kept = 0;
  for (int j = threadIdx.x; j < num; j += blockDim.x) {
    const Dtype value = label[j];
    const int y = static_cast<int>(value);  // NaN gives 0, caught below
    int t;
    if (static_cast<Dtype>(y) != value) {
      t = ignored;
      atomicMin(&first_bad, j);
    } else if (has_ignore_label && y == ignore_label) {
      t = ignored;
    } else if (semi_supervised && y == unlabeled_label) {
      t = pending;
      ++my_kept;
    } else if (y >= 0 && y < classes) {
      t = y;
      ++my_kept;
    } else {
      t = ignored;
      atomicMin(&first_bad, j);
    }
    target[j] = t;
  }
  const int total = SumOverBlock(my_kept, kept);
  if (threadIdx.x == 0) {
    summary[kept_field] = total;
    summary[bad_field] = first_bad;
  }
}

// lse[c] = log sum_j exp F[j, c] over kept rows: each thread an online
// (max-rescaled) log-sum-exp over every kTileRows-th row, then the tile's
// partial (max, sum) pairs merged in a fixed tree. NaN or inf in a column
// makes its lse non-finite, which the host reports.
template <typename Dtype>
__global__ void GenerativeColumnLogSumExp(const int num, const int classes,
    const Dtype* score, const Dtype* target, const int ignored, Dtype* lse) {
  __shared__ Dtype tile_max[kTileRows][kTileColumns];
  __shared__ Dtype tile_sum[kTileRows][kTileColumns];
  const int c = blockIdx.x * kTileColumns + threadIdx.x;
  Dtype running_max = -INFINITY;
  Dtype running_sum = 0;
  if (c < classes) {
    for (int j = threadIdx.y; j < num; j += kTileRows) {
      if (static_cast<int>(target[j]) == ignored) { continue; }
      const Dtype x = score[j * classes + c];
      if (x > running_max) {
        running_sum = running_sum * exp(running_max - x) + Dtype(1);
        running_max = x;
      } else {
        running_sum += exp(x - running_max);
      }
    }
  }
  tile_max[threadIdx.y][threadIdx.x] = running_max;
  tile_sum[threadIdx.y][threadIdx.x] = running_sum;
  for (int stride = kTileRows / 2; stride > 0; stride /= 2) {
    __syncthreads();
    if (threadIdx.y < stride) {
      const Dtype a_max = tile_max[threadIdx.y][threadIdx.x];
      const Dtype b_max = tile_max[threadIdx.y + stride][threadIdx.x];
      const Dtype merged_max = a_max > b_max ? a_max : b_max;
      // both empty (-inf): stays empty rather than exp(-inf + inf) = NaN
      if (merged_max != -INFINITY) {
        tile_sum[threadIdx.y][threadIdx.x] =
            tile_sum[threadIdx.y][threadIdx.x] * exp(a_max - merged_max) +
            tile_sum[threadIdx.y + stride][threadIdx.x] *
            exp(b_max - merged_max);
        tile_max[threadIdx.y][threadIdx.x] = merged_max;
      }
    }
  }
  __syncthreads();
  if (threadIdx.y == 0 && c < classes) {
    lse[c] = tile_max[0][threadIdx.x] + log(tile_sum[0][threadIdx.x]);
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

// One block: each kept example's (lambda-weighted) log p_y term, with the
// arg-max class of unlabelled examples written to target, summed into
// summary[objective_field]. log M comes from summary[kept_field].
template <typename Dtype>
__global__ void GenerativeRowTerms(const int num, const int classes,
    const Dtype* score, const Dtype* lse, const Dtype* log_prior,
    const Dtype unlabeled_weight, const int ignored, const int pending,
    const int kept_field, const int objective_field, Dtype* target,
    Dtype* summary) {
  __shared__ Dtype terms[kRowBlock];
  const Dtype log_kept = log(summary[kept_field]);
  Dtype my_sum = 0;
  for (int j = threadIdx.x; j < num; j += blockDim.x) {
    const int t = static_cast<int>(target[j]);
    const Dtype* row = score + j * classes;
    if (t == ignored) { continue; }
    if (t == pending) {
      int best = 0;
      Dtype best_value = row[0] - lse[0] + log_prior[0];
      for (int c = 1; c < classes; ++c) {
        const Dtype value = row[c] - lse[c] + log_prior[c];
        if (value > best_value) { best_value = value; best = c; }
      }
      target[j] = best;
      my_sum += unlabeled_weight * (best_value + log_kept);
    } else {
      my_sum += row[t] - lse[t] + log_kept;
    }
  }
  const Dtype total = SumOverBlock(my_sum, terms);
  if (threadIdx.x == 0) { summary[objective_field] = total; }
}

// Weight of example j's own target in its column: lambda if unlabelled.
template <typename Dtype>
__device__ inline Dtype GenerativeTargetWeight(const Dtype label,
    const bool semi_supervised, const int unlabeled_label,
    const Dtype unlabeled_weight) {
  return (semi_supervised && static_cast<int>(label) == unlabeled_label) ?
      unlabeled_weight : Dtype(1);
}

// Tiled as the log-sum-exp, the per-class sums: m_c = sum_j t[j, c],
// sum_j W[j, c]^2 (ESS) and over the column's own examples (target c)
// S_c = sum W[j, c], Q_c = sum W[j, c]^2 and n_c. The ESS and within-class
// sums are skipped when no top asks for them.
template <typename Dtype>
__global__ void GenerativeColumnSums(const int num, const int classes,
    const Dtype* weights, const Dtype* label, const Dtype* target,
    const bool semi_supervised, const int unlabeled_label,
    const Dtype unlabeled_weight, const bool want_w2, const bool want_within,
    Dtype* mass, Dtype* w2, Dtype* in_mass, Dtype* in_sq, Dtype* in_count) {
  __shared__ Dtype tile[5][kTileRows][kTileColumns];
  const int c = blockIdx.x * kTileColumns + threadIdx.x;
  Dtype sums[5] = {0, 0, 0, 0, 0};  // mass, w2, in_mass, in_sq, in_count
  if (c < classes) {
    for (int j = threadIdx.y; j < num; j += kTileRows) {
      const Dtype w = weights[j * classes + c];
      if (want_w2) { sums[1] += w * w; }
      if (static_cast<int>(target[j]) == c) {
        sums[0] += GenerativeTargetWeight(label[j], semi_supervised,
            unlabeled_label, unlabeled_weight);
        if (want_within) {
          sums[2] += w;
          sums[3] += w * w;
          sums[4] += 1;
        }
      }
    }
  }
  for (int k = 0; k < 5; ++k) { tile[k][threadIdx.y][threadIdx.x] = sums[k]; }
  for (int k = 0; k < 5; ++k) { SumDownTile(tile[k]); }
  if (threadIdx.y == 0 && c < classes) {
    mass[c] = tile[0][0][threadIdx.x];
    w2[c] = tile[1][0][threadIdx.x];
    in_mass[c] = tile[2][0][threadIdx.x];
    in_sq[c] = tile[3][0][threadIdx.x];
    in_count[c] = tile[4][0][threadIdx.x];
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
  const Dtype* score = bottom[0]->gpu_data();
  const Dtype* label = bottom[1]->gpu_data();
  Dtype* target = target_class_.mutable_gpu_data();
  Dtype* summary = summary_.mutable_gpu_data();
  const dim3 tile(kTileColumns, kTileRows);
  const int column_blocks = (classes_ + kTileColumns - 1) / kTileColumns;

  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeClassify<Dtype><<<1, kRowBlock>>>(num_, classes_, label,
      has_ignore_label_, ignore_label_, semi_supervised_, unlabeled_label_,
      kIgnored, kUnlabeledPending, target, summary, kKept, kFirstBadLabel);
  CUDA_POST_KERNEL_CHECK;
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeColumnLogSumExp<Dtype><<<column_blocks, tile>>>(num_, classes_,
      score, target, kIgnored, column(summary, kLse));
  CUDA_POST_KERNEL_CHECK;
  const int count = num_ * classes_;
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeWeights<Dtype><<<CAFFE_GET_BLOCKS(count),
      CAFFE_CUDA_NUM_THREADS>>>(count, classes_, score, target,
      column(summary, kLse), kIgnored, weights_.mutable_gpu_data());
  CUDA_POST_KERNEL_CHECK;
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeRowTerms<Dtype><<<1, kRowBlock>>>(num_, classes_, score,
      column(summary, kLse), log_prior_.gpu_data(), unlabeled_weight_,
      kIgnored, kUnlabeledPending, kKept, kObjective, target, summary);
  CUDA_POST_KERNEL_CHECK;
  // NOLINT_NEXT_LINE(whitespace/operators)
  GenerativeColumnSums<Dtype><<<column_blocks, tile>>>(num_, classes_,
      weights_.gpu_data(), label, target, semi_supervised_, unlabeled_label_,
      unlabeled_weight_, top.size() >= 2, top.size() >= 3,
      column(summary, kMass), column(summary, kSumW2),
      column(summary, kInMass), column(summary, kInSq),
      column(summary, kInCount));
  CUDA_POST_KERNEL_CHECK;

  // The one wait of the pass: a single device-to-host copy.
  const Dtype* host = summary_.cpu_data();
  if (static_cast<int>(host[kFirstBadLabel]) < num_) {
    // ClassifyExamples stops with the message naming the example and label
    vector<Dtype> scratch(num_);
    ClassifyExamples(bottom[1]->cpu_data(), scratch.data());
    LOG(FATAL) << "GenerativeLoss: the GPU found a bad label at example "
        << host[kFirstBadLabel] << " that the host check accepts";
  }
  kept_count_ = static_cast<int>(host[kKept]);
  if (kept_count_ == 0) {
    // every row ignored: W is 0 and so are m_c, the loss and the diagnostics
    for (int i = 0; i < top.size(); ++i) { top[i]->mutable_cpu_data()[0] = 0; }
    return;
  }
  CheckColumnsFinite(column(host, kLse));
  top[0]->mutable_cpu_data()[0] = -host[kObjective] /
      get_normalizer(kept_count_);
  WriteEss(column(host, kSumW2), column(host, kMass), top);
  WriteWithinClassDiagnostics(column(host, kInMass), column(host, kInSq),
      column(host, kInCount), top);
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
      bottom[1]->gpu_data(), target_class_.gpu_data(),
      column(summary_.gpu_data(), kMass), semi_supervised_, unlabeled_label_,
      unlabeled_weight_, scale, bottom[0]->mutable_gpu_diff());
  CUDA_POST_KERNEL_CHECK;
}

INSTANTIATE_LAYER_GPU_FUNCS(GenerativeLossLayer);

}  // namespace caffe
