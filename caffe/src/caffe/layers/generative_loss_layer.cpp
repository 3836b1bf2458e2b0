#include <algorithm>
#include <cmath>
#include <limits>
#include <vector>

#include "caffe/layers/generative_loss_layer.hpp"
#include "caffe/util/math_functions.hpp"

namespace caffe {

template <typename Dtype>
void GenerativeLossLayer<Dtype>::LayerSetUp(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::LayerSetUp(bottom, top);
  // LossLayer gives top[0] weight 1 when none is given; the ESS top is a
  // diagnostic, so a missing weight for it means 0 rather than an error.
  while (this->layer_param_.loss_weight_size() < top.size()) {
    this->layer_param_.add_loss_weight(Dtype(0));
  }
  const LossParameter& loss_param = this->layer_param_.loss_param();
  has_ignore_label_ = loss_param.has_ignore_label();
  ignore_label_ = has_ignore_label_ ? loss_param.ignore_label() : 0;
  if (!loss_param.has_normalization() && loss_param.has_normalize()) {
    normalization_ = loss_param.normalize() ?
        LossParameter_NormalizationMode_VALID :
        LossParameter_NormalizationMode_BATCH_SIZE;
  } else {
    normalization_ = loss_param.normalization();
  }

  const GenerativeLossParameter& param =
      this->layer_param_.generative_loss_param();
  semi_supervised_ = param.semi_supervised();
  unlabeled_label_ = param.unlabeled_label();
  unlabeled_weight_ = param.unlabeled_weight();
  CHECK_GE(unlabeled_weight_, 0) << "GenerativeLoss: unlabeled_weight "
      "(lambda of Eq. 19) must be >= 0, got " << unlabeled_weight_;
  if (semi_supervised_ && has_ignore_label_) {
    CHECK_NE(ignore_label_, unlabeled_label_) << "GenerativeLoss: "
        "loss_param.ignore_label and generative_loss_param.unlabeled_label "
        "must differ (both are " << ignore_label_ << ")";
  }

  CHECK_GE(bottom[0]->num_axes(), 2) << "GenerativeLoss: scores must be "
      "N x C (or N x C x 1 x 1), got shape " << bottom[0]->shape_string();
  const int classes = bottom[0]->shape(1);
  log_prior_.Reshape(vector<int>(1, classes));
  Dtype* log_prior = log_prior_.mutable_cpu_data();
  if (param.class_prior_size() == 0) {
    caffe_set(classes, Dtype(-std::log(static_cast<double>(classes))),
              log_prior);
  } else {
    CHECK_EQ(param.class_prior_size(), classes) << "GenerativeLoss: "
        "class_prior needs one value per class (" << classes << " classes)";
    double total = 0;
    for (int c = 0; c < classes; ++c) {
      CHECK(param.class_prior(c) > 0 && std::isfinite(param.class_prior(c)))
          << "GenerativeLoss: class_prior values must be positive and "
          "finite; class " << c << " has " << param.class_prior(c);
      total += param.class_prior(c);
    }
    for (int c = 0; c < classes; ++c) {
      log_prior[c] = std::log(param.class_prior(c) / total);
    }
  }
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::Reshape(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  LossLayer<Dtype>::Reshape(bottom, top);
  CHECK_GE(bottom[0]->num_axes(), 2) << "GenerativeLoss: scores must be "
      "N x C (or N x C x 1 x 1), got shape " << bottom[0]->shape_string();
  CHECK_EQ(bottom[0]->count(2), 1) << "GenerativeLoss: scores must be "
      "N x C (or N x C x 1 x 1), got shape " << bottom[0]->shape_string();
  num_ = bottom[0]->shape(0);
  classes_ = bottom[0]->shape(1);
  CHECK_EQ(classes_, log_prior_.count()) << "GenerativeLoss: the number of "
      "classes changed after set-up";
  CHECK_EQ(bottom[1]->count(), num_) << "GenerativeLoss: labels must hold "
      "one value per example (" << num_ << "), got shape "
      << bottom[1]->shape_string();
  const vector<int> per_example(1, num_);
  weights_.Reshape(num_, classes_, 1, 1);
  summary_.Reshape(vector<int>(1, kSummaryFields + kColumnArrays * classes_));
  target_class_.Reshape(per_example);
  for (int i = 1; i < top.size(); ++i) {
    top[i]->Reshape(vector<int>());
  }
}

template <typename Dtype>
Dtype GenerativeLossLayer<Dtype>::get_normalizer(int valid_count) const {
  Dtype normalizer;
  switch (normalization_) {
    case LossParameter_NormalizationMode_FULL:
    case LossParameter_NormalizationMode_BATCH_SIZE:
      normalizer = Dtype(num_);
      break;
    case LossParameter_NormalizationMode_VALID:
      normalizer = Dtype(valid_count);
      break;
    case LossParameter_NormalizationMode_NONE:
      normalizer = Dtype(1);
      break;
    default:
      LOG(FATAL) << "Unknown normalization mode: "
          << LossParameter_NormalizationMode_Name(normalization_);
  }
  // As SoftmaxWithLoss: a batch with every example ignored gives loss 0.
  return std::max(Dtype(1.0), normalizer);
}

template <typename Dtype>
int GenerativeLossLayer<Dtype>::ClassifyExamples(const Dtype* label,
    Dtype* target) const {
  int kept = 0;
  for (int j = 0; j < num_; ++j) {
    const int y = static_cast<int>(label[j]);
    CHECK_EQ(static_cast<Dtype>(y), label[j]) << "GenerativeLoss: labels "
        "must be integers; example " << j << " has label " << label[j];
    if (has_ignore_label_ && y == ignore_label_) {
      target[j] = kIgnored;
      continue;
    }
    ++kept;
    if (semi_supervised_ && y == unlabeled_label_) {
      target[j] = kUnlabeledPending;
      continue;
    }
    CHECK(y >= 0 && y < classes_) << "GenerativeLoss: example " << j
        << " has label " << y << ", outside the classes [0, " << classes_
        << ")" << (has_ignore_label_ ? "" : " (no loss_param.ignore_label set)")
        << (semi_supervised_ ? "" : " (semi-supervised mode off, so "
            "unlabelled examples are not allowed)");
    target[j] = y;
  }
  return kept;
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::CheckColumnsFinite(const Dtype* lse) const {
  for (int c = 0; c < classes_; ++c) {
    CHECK(std::isfinite(lse[c])) << "GenerativeLoss: class column " << c
        << " has a non-finite score (NaN or inf); the net has diverged "
        "(try a lower base_lr) or its input holds NaN/inf";
  }
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::WriteEss(const Dtype* sum_w2,
    const Dtype* mass, const vector<Blob<Dtype>*>& top) const {
  if (top.size() < 2) { return; }
  double ess_sum = 0;
  int present = 0;
  for (int c = 0; c < classes_; ++c) {
    if (mass[c] > 0) {
      ess_sum += 1.0 / sum_w2[c];
      ++present;
    }
  }
  top[1]->mutable_cpu_data()[0] = (present == 0) ? Dtype(0) :
      Dtype(ess_sum / present / kept_count_);
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::WriteWithinClassDiagnostics(
    const Dtype* in_mass, const Dtype* in_sq, const Dtype* in_count,
    const vector<Blob<Dtype>*>& top) const {
  if (top.size() < 3) { return; }
  double sum = 0, sum_sq = 0, cross = 0;
  int present = 0;
  for (int c = 0; c < classes_; ++c) {
    if (in_count[c] == 0) { continue; }
    // in_sq > 0: W = exp(F - lse) > 0 for finite scores (checked)
    const double mass = in_mass[c];
    const double fraction = mass * mass / in_sq[c] / in_count[c];
    sum += fraction;
    sum_sq += fraction * fraction;
    cross += 1 - mass;
    ++present;
  }
  const double mean = present ? sum / present : 0;
  top[2]->mutable_cpu_data()[0] = Dtype(mean);
  if (top.size() >= 4) {
    const double variance = present ? sum_sq / present - mean * mean : 0;
    top[3]->mutable_cpu_data()[0] = Dtype(std::sqrt(std::max(0.0, variance)));
  }
  if (top.size() >= 5) {
    top[4]->mutable_cpu_data()[0] = present ? Dtype(cross / present) : Dtype(0);
  }
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::Forward_cpu(
    const vector<Blob<Dtype>*>& bottom, const vector<Blob<Dtype>*>& top) {
  const Dtype* score = bottom[0]->cpu_data();
  Dtype* target = target_class_.mutable_cpu_data();
  kept_count_ = ClassifyExamples(bottom[1]->cpu_data(), target);
  Dtype* summary = summary_.mutable_cpu_data();
  caffe_set(summary_.count(), Dtype(0), summary);
  Dtype* lse = column(summary, kLse);
  Dtype* mass = column(summary, kMass);
  Dtype* w2 = column(summary, kSumW2);
  if (kept_count_ == 0) {
    caffe_set(num_ * classes_, Dtype(0), weights_.mutable_cpu_data());
    for (int i = 0; i < top.size(); ++i) { top[i]->mutable_cpu_data()[0] = 0; }
    return;
  }
  // Column-wise log-sum-exp over kept rows, max-subtracted for stability,
  // and the batch-softmax weights W. Rows are walked in memory order; the C
  // running values stay in cache.
  Dtype* weights = weights_.mutable_cpu_data();
  caffe_set(classes_, -std::numeric_limits<Dtype>::infinity(), lse);
  for (int j = 0; j < num_; ++j) {
    if (target[j] == kIgnored) { continue; }
    const Dtype* row = score + j * classes_;
    for (int c = 0; c < classes_; ++c) { lse[c] = std::max(lse[c], row[c]); }
  }
  vector<Dtype> column_sum(classes_, Dtype(0));
  for (int j = 0; j < num_; ++j) {
    const Dtype* row = score + j * classes_;
    Dtype* weight_row = weights + j * classes_;
    if (target[j] == kIgnored) {
      caffe_set(classes_, Dtype(0), weight_row);
      continue;
    }
    for (int c = 0; c < classes_; ++c) {
      weight_row[c] = std::exp(row[c] - lse[c]);
      column_sum[c] += weight_row[c];
    }
  }
  for (int c = 0; c < classes_; ++c) {
    lse[c] += std::log(column_sum[c]);
    column_sum[c] = Dtype(1) / column_sum[c];
  }
  CheckColumnsFinite(lse);
  for (int j = 0; j < num_; ++j) {
    if (target[j] == kIgnored) { continue; }
    caffe_mul(classes_, column_sum.data(), weights + j * classes_,
              weights + j * classes_);
  }

  // Each kept example's log p_y term: its label's column, or (unlabelled)
  // the arg-max of log p_y + log rho_y, weighted by lambda.
  const Dtype* log_prior = log_prior_.cpu_data();
  const Dtype log_kept = std::log(static_cast<Dtype>(kept_count_));
  double objective = 0;
  for (int j = 0; j < num_; ++j) {
    if (target[j] == kIgnored) { continue; }
    const Dtype* row = score + j * classes_;
    if (target[j] == kUnlabeledPending) {
      int best = 0;
      Dtype best_value = row[0] - lse[0] + log_prior[0];
      for (int c = 1; c < classes_; ++c) {
        const Dtype value = row[c] - lse[c] + log_prior[c];
        if (value > best_value) { best_value = value; best = c; }
      }
      target[j] = best;
      mass[best] += unlabeled_weight_;
      objective += unlabeled_weight_ * (best_value + log_kept);
    } else {
      const int y = static_cast<int>(target[j]);
      mass[y] += 1;
      objective += row[y] - lse[y] + log_kept;
    }
  }
  top[0]->mutable_cpu_data()[0] =
      Dtype(-objective) / get_normalizer(kept_count_);

  if (top.size() >= 2) {
    for (int j = 0; j < num_; ++j) {
      const Dtype* weight_row = weights + j * classes_;
      for (int c = 0; c < classes_; ++c) {
        w2[c] += weight_row[c] * weight_row[c];
      }
    }
    WriteEss(w2, mass, top);
  }
  if (top.size() >= 3) {
    // each column's own examples (target class c), accumulated in double
    vector<double> in_mass(classes_, 0), in_sq(classes_, 0);
    Dtype* in_count = column(summary, kInCount);
    for (int j = 0; j < num_; ++j) {
      const int c = static_cast<int>(target[j]);
      if (c < 0) { continue; }  // ignored
      const double w = weights[j * classes_ + c];
      in_mass[c] += w;
      in_sq[c] += w * w;
      in_count[c] += 1;
    }
    std::copy(in_mass.begin(), in_mass.end(), column(summary, kInMass));
    std::copy(in_sq.begin(), in_sq.end(), column(summary, kInSq));
    WriteWithinClassDiagnostics(column(summary, kInMass),
        column(summary, kInSq), in_count, top);
  }
}

template <typename Dtype>
void GenerativeLossLayer<Dtype>::Backward_cpu(
    const vector<Blob<Dtype>*>& top, const vector<bool>& propagate_down,
    const vector<Blob<Dtype>*>& bottom) {
  if (propagate_down[1]) {
    LOG(FATAL) << this->type()
               << " Layer cannot backpropagate to label inputs.";
  }
  if (!propagate_down[0]) { return; }
  const Dtype* label = bottom[1]->cpu_data();
  const Dtype* target = target_class_.cpu_data();
  const Dtype* weights = weights_.cpu_data();
  const Dtype* mass = column(summary_.cpu_data(), kMass);
  Dtype* diff = bottom[0]->mutable_cpu_diff();
  // d(loss)/dF[j, c] = scale * (m_c W[j, c] - t[j, c]), Eq. 10 / Eq. 14.
  // Ignored rows have W = 0 and no target, so their gradient is 0.
  const Dtype scale = top[0]->cpu_diff()[0] / get_normalizer(kept_count_);
  for (int j = 0; j < num_; ++j) {
    Dtype* diff_row = diff + j * classes_;
    const Dtype* weight_row = weights + j * classes_;
    for (int c = 0; c < classes_; ++c) {
      diff_row[c] = scale * mass[c] * weight_row[c];
    }
    if (target[j] == kIgnored) { continue; }
    const bool unlabeled = semi_supervised_ &&
        static_cast<int>(label[j]) == unlabeled_label_;
    diff_row[static_cast<int>(target[j])] -=
        scale * (unlabeled ? unlabeled_weight_ : Dtype(1));
  }
}

#ifdef CPU_ONLY
STUB_GPU(GenerativeLossLayer);
#endif

INSTANTIATE_CLASS(GenerativeLossLayer);
REGISTER_LAYER_CLASS(GenerativeLoss);

}  // namespace caffe
