#ifndef CAFFE_GENERATIVE_LOSS_LAYER_HPP_
#define CAFFE_GENERATIVE_LOSS_LAYER_HPP_

#include <vector>

#include "caffe/blob.hpp"
#include "caffe/layer.hpp"
#include "caffe/proto/caffe.pb.h"

#include "caffe/layers/loss_layer.hpp"

namespace caffe {

/**
 * @brief The "generative gradient" loss of Dai, Lu & Wu (ICLR 2015 workshop,
 *        Eq. 8-10; Statistics and Its Interface 2016, Eq. 13-19).
 *
 * The class-y model is p_y(x) = exp(f_y(x)) q(x) / Z_y, with the mini-batch as
 * importance samples from q. With scores F[j, c] = f_c(x_j) and M the number
 * of examples in the batch that are not ignored, the objective is
 *
 *   l_G = sum_{labelled i} [ F[i, y_i] - log( (1/M) sum_k exp F[k, y_i] ) ]
 *       + lambda * sum_{unlabelled i} max_y [ F[i, y] - log( (1/M) sum_k
 *                                            exp F[k, y] ) + log rho_y ]
 *
 * (the second sum only in semi-supervised mode), i.e. a softmax DOWN THE
 * BATCH for each class column. With W[j, c] = exp F[j, c] / sum_k exp F[k, c]
 * its gradient is
 *
 *   d l_G / d F[j, c] = t[j, c] - m_c W[j, c],
 *
 * where t[j, c] is 1 if example j is labelled c, lambda if j is unlabelled
 * with arg-max class c, else 0, and m_c = sum_j t[j, c]. Forward and backward
 * cost O(N C) time and memory; W is kept from forward (as SoftmaxWithLoss
 * keeps its probabilities), so each score costs one exp in total.
 *
 * The layer reports loss = -l_G / normalizer (a minimisation objective).
 * Ignored examples (loss_param.ignore_label) are removed from the batch
 * entirely: they are neither terms nor importance samples. Unlabelled
 * examples (semi-supervised mode) are importance samples for every column.
 *
 * Bottoms: [0] scores F, N x C (or N x C x 1 x 1); [1] labels, N values.
 * Tops: [0] loss (scalar); optional [1] the mean, over the classes with
 * m_c > 0, of the effective sample size ESS_c = 1 / sum_j W[j, c]^2 as a
 * fraction of M. ESS falls as classes separate; it signals when to switch
 * from generative pre-training to discriminative tuning (journal Sec. 4.2).
 * Optional diagnostics of the same weights restricted to a column's own
 * examples (those whose target class is c: their label, or for unlabelled
 * examples their arg-max class), over the classes present:
 *   [2] mean of the within-class ESS fraction (S_c^2 / Q_c) / n_c, with
 *       S_c = sum_{t_j = c} W[j, c], Q_c = sum_{t_j = c} W[j, c]^2 and n_c
 *       the number of such examples: 1 when column c weighs its own examples
 *       equally, 1/n_c when one of them takes all of its in-class weight;
 *   [3] its standard deviation across those classes;
 *   [4] mean of 1 - S_c, the weight column c puts on other classes' examples.
 * Top [1] falls to about 1/C as soon as the net separates the classes, and
 * then carries no further information (results/mnist_table1.md); [2]-[4]
 * describe what happens inside the classes.
 * Tops [1]-[4] have loss_weight 0 unless the prototxt says otherwise.
 *
 * On a GPU everything is computed on the device, labels checked included,
 * and the host waits once per forward pass: one copy of the summary_ blob
 * (the counts, the objective and six per-class sums, 6 C + 4 values), from
 * which the host checks labels and finiteness and writes every top.
 */
template <typename Dtype>
class GenerativeLossLayer : public LossLayer<Dtype> {
 public:
  explicit GenerativeLossLayer(const LayerParameter& param)
      : LossLayer<Dtype>(param) {}
  virtual void LayerSetUp(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Reshape(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);

  virtual inline const char* type() const { return "GenerativeLoss"; }
  virtual inline int ExactNumTopBlobs() const { return -1; }
  virtual inline int MinTopBlobs() const { return 1; }
  virtual inline int MaxTopBlobs() const { return 5; }

 protected:
  virtual void Forward_cpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Forward_gpu(const vector<Blob<Dtype>*>& bottom,
      const vector<Blob<Dtype>*>& top);
  virtual void Backward_cpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);
  virtual void Backward_gpu(const vector<Blob<Dtype>*>& top,
      const vector<bool>& propagate_down, const vector<Blob<Dtype>*>& bottom);

  /// Codes stored in target_class_ besides real classes (>= 0).
  enum { kIgnored = -1, kUnlabeledPending = -2 };

  /// Validates the labels (host side, O(N): a bad label must stop training
  /// with a message, also on GPU) and marks each example as labelled (its
  /// class), unlabelled (kUnlabeledPending) or ignored (kIgnored).
  /// Returns M, the number of examples that are not ignored.
  int ClassifyExamples(const Dtype* label, Dtype* target) const;
  /// Stops with a clear message if a column's log-sum-exp is NaN or inf.
  void CheckColumnsFinite(const Dtype* lse) const;
  /// Normalizer of the loss for the configured mode (as SoftmaxWithLoss).
  Dtype get_normalizer(int valid_count) const;
  /// Fills top[1] (if present) from per-class sums of W^2 and masses m_c.
  void WriteEss(const Dtype* sum_w2, const Dtype* mass,
      const vector<Blob<Dtype>*>& top) const;
  /// Fills tops [2]-[4] (if present) from the per-class sums over each
  /// column's own examples: S_c = sum W[j, c], Q_c = sum W[j, c]^2, n_c.
  void WriteWithinClassDiagnostics(const Dtype* in_mass, const Dtype* in_sq,
      const Dtype* in_count, const vector<Blob<Dtype>*>& top) const;

  /// Layout of summary_: kSummaryFields scalars, then six per-class arrays.
  enum { kKept = 0, kFirstBadLabel = 1, kObjective = 2, kSummaryFields = 4 };
  enum Column { kLse = 0, kMass, kSumW2, kInMass, kInSq, kInCount,
                kColumnArrays };
  /// Start of one per-class array inside summary_'s data.
  const Dtype* column(const Dtype* summary, Column which) const {
    return summary + kSummaryFields + which * classes_;
  }
  Dtype* column(Dtype* summary, Column which) const {
    return summary + kSummaryFields + which * classes_;
  }

  int num_;      ///< N, examples in the batch
  int classes_;  ///< C, score columns
  bool has_ignore_label_;
  int ignore_label_;
  bool semi_supervised_;
  int unlabeled_label_;
  Dtype unlabeled_weight_;  ///< lambda of Eq. 19
  LossParameter_NormalizationMode normalization_;

  Blob<Dtype> weights_;      ///< N x C: W[j, c]; 0 on ignored rows
  Blob<Dtype> log_prior_;    ///< C: log rho_y (semi-supervised mode)
  /// kSummaryFields + kColumnArrays x C: M, the first bad label's example
  /// (N if none) and the objective l_G (these three from the GPU path only;
  /// the CPU path has them at hand); then per class c: the
  /// log-sum-exp of column c over kept rows, m_c = sum_j t[j, c],
  /// sum_j W[j, c]^2 (ESS), and S_c, Q_c, n_c (tops [2]-[4]). One blob so
  /// that the GPU path reads everything back with one copy.
  Blob<Dtype> summary_;
  /// N: per example, the class whose column it pulls up (its label, or its
  /// arg-max class if unlabelled), or -1 if ignored.
  Blob<Dtype> target_class_;
  int kept_count_;           ///< M: examples that are not ignored
};

}  // namespace caffe

#endif  // CAFFE_GENERATIVE_LOSS_LAYER_HPP_
